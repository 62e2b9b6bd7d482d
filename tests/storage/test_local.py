"""The local-directory store's own failures: file system errors become the storage error tree,
naming keys, never the server's paths."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
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


def test_a_write_killed_midway_leaves_nothing_beside_the_objects_and_is_swept(root: Path) -> None:
    LocalObjectStore(root)
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from storage.local import LocalObjectStore; "
            "LocalObjectStore(Path(sys.argv[1])).put_stream('models/m3/a.model', sys.stdin.buffer)",
            str(root),
        ],
        stdin=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    assert writer.stdin is not None
    writer.stdin.write(b"x" * 3_000_000)
    writer.stdin.flush()
    deadline = time.monotonic() + 30
    while not [p for p in (root / ".tmp").iterdir() if p.stat().st_size >= 1024 * 1024]:
        assert time.monotonic() < deadline, "the writer never wrote"
        time.sleep(0.05)  # the file's size is the only signal another process gives
    writer.kill()
    writer.wait()
    writer.stdin.close()
    # The model's folder holds nothing of it, and nothing lists it.
    assert not (root / "models" / "m3").exists() or not any((root / "models" / "m3").iterdir())
    assert list(LocalObjectStore(root).list("")) == []
    (left,) = (root / ".tmp").iterdir()
    # A store opened once the file has not been written to for an hour removes it.
    old = time.time() - 3601
    os.utime(left, (old, old))
    LocalObjectStore(root)
    assert list((root / ".tmp").iterdir()) == []


def test_deleting_a_folders_last_object_removes_the_folder_but_not_a_top_level_one(
    root: Path,
) -> None:
    store = LocalObjectStore(root)
    store.put("models/m4/a.model", b"a")
    store.put("models/m4/manifest.json", b"{}")
    store.put("datasets/d.csv", b"a,b\n")
    store.delete("models/m4/a.model")
    assert (root / "models" / "m4").is_dir()
    store.delete("models/m4/manifest.json")
    assert not (root / "models" / "m4").exists()
    store.delete("datasets/d.csv")
    assert (root / "datasets").is_dir()
    # A write into a folder a delete has just removed makes it again.
    store.put("models/m4/manifest.json", b"{}")
    assert store.get("models/m4/manifest.json") == b"{}"


def test_put_in_order_stops_at_an_object_that_cannot_be_written_and_leaves_no_temporary_file(
    root: Path,
) -> None:
    store = LocalObjectStore(root)
    (root / "models" / "m3" / "manifest.json").mkdir(parents=True)  # in the manifest's place
    with pytest.raises(IntegrityError, match=r"^models/m3/manifest\.json is not a stored object"):
        store.put_in_order([("models/m3/a.model", b"artifact"), ("models/m3/manifest.json", b"{}")])
    # As put one after the other: the artifact in place, no manifest naming it (the next save of
    # the model, or its job's end, removes it), and no staged file left in .tmp.
    assert store.get("models/m3/a.model") == b"artifact"
    assert (root / "models" / "m3" / "manifest.json").is_dir()
    assert list((root / ".tmp").iterdir()) == []
