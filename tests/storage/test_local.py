"""The local-directory store's own failures: file system errors become the storage error tree,
naming keys, never the server's paths."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from storage.errors import IntegrityError, ObjectNotFound, StorageUnavailable
from storage.local import LocalObjectStore


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "objects"


def test_a_directory_where_an_object_should_be_is_an_integrity_error(root: Path) -> None:
    store = LocalObjectStore(root)
    (root / "models" / "m1" / "manifest.json").mkdir(parents=True)
    for operation in (
        lambda: store.get("models/m1/manifest.json"),
        lambda: store.download("models/m1/manifest.json", open("/dev/null", "wb")),  # noqa: SIM115
        lambda: store.put("models/m1/manifest.json", b"{}"),
        lambda: store.delete("models/m1/manifest.json"),
    ):
        with pytest.raises(IntegrityError) as caught:
            operation()
        assert str(caught.value) == (
            "models/m1/manifest.json is not a stored object: something else is in its place"
        )
    assert not store.exists("models/m1/manifest.json")


def test_a_file_where_a_folder_should_be_is_an_integrity_error(root: Path) -> None:
    store = LocalObjectStore(root)
    store.put("models/m2", b"a file, not a folder")
    with pytest.raises(IntegrityError, match=r"^models/m2/manifest\.json is not a stored object"):
        store.get("models/m2/manifest.json")
    with pytest.raises(IntegrityError):
        store.put("models/m2/manifest.json", b"{}")


def test_a_removed_storage_directory_is_unavailable_and_not_recreated(root: Path) -> None:
    store = LocalObjectStore(root)
    store.put("datasets/d.csv", b"a,b\n")
    shutil.rmtree(root)
    for operation in (
        lambda: store.get("datasets/d.csv"),
        lambda: store.put("datasets/e.csv", b"a,b\n"),
        lambda: store.exists("datasets/d.csv"),
        lambda: list(store.list("datasets/")),
    ):
        with pytest.raises(StorageUnavailable) as caught:
            operation()
        assert str(root) not in str(caught.value)
    assert not root.exists()


def test_a_missing_object_in_a_present_directory_is_still_not_found(root: Path) -> None:
    store = LocalObjectStore(root)
    with pytest.raises(ObjectNotFound):
        store.get("datasets/none.csv")
    assert not store.exists("datasets/none.csv")
