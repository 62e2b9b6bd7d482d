"""The object store contract (``storage/base.py``), run against every backend."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, cast

import pytest

from storage.base import ObjectStore
from storage.errors import ObjectNotFound
from tests.support.object_stores import PART_SIZE, StoreFactory

MIB = 1024 * 1024
BAD_KEYS = ["../x", "/abs", "a/../../b", "A B", "", "a//b", "a/", "a\\b", ".hidden", "a/./b"]


class Source:
    """A non-seekable stream of ``size`` known bytes that answers reads short, as a pipe does,
    and records how much each read asked for."""

    def __init__(self, size: int, piece: int = 300_000) -> None:
        self.data = os.urandom(size)
        self._piece = piece
        self._offset = 0
        self.asked: list[int] = []

    def stream(self) -> BinaryIO:
        """This source typed as the stream the store reads."""
        return cast(BinaryIO, self)

    def read(self, amount: int = -1) -> bytes:
        self.asked.append(amount)
        if amount < 0:
            amount = len(self.data)
        end = self._offset + min(amount, self._piece)
        chunk = self.data[self._offset : end]
        self._offset = end
        self._reached(self._offset)
        return chunk

    def _reached(self, offset: int) -> None:
        """A hook for sources that stop part way."""


class StallingSource(Source):
    """A source that stops after ``stall_at`` bytes until released (or fails there)."""

    def __init__(self, size: int, stall_at: int, fail: bool = False) -> None:
        super().__init__(size)
        self._stall_at = stall_at
        self._fail = fail
        self.stalled = threading.Event()
        self.release = threading.Event()

    def _reached(self, offset: int) -> None:
        if offset >= self._stall_at and not self.stalled.is_set():
            self.stalled.set()
            if self._fail:
                raise OSError("the client went away")
            assert self.release.wait(30), "the test never released the source"


class Sink:
    """A write-only target that keeps each write apart."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.writes.append(bytes(data))
        return len(data)

    def value(self) -> bytes:
        return b"".join(self.writes)

    def stream(self) -> BinaryIO:
        return cast(BinaryIO, self)


def test_put_then_get_returns_the_bytes(store: ObjectStore) -> None:
    store.put("datasets/iris.csv", b"a,b\n1,2\n")
    assert store.get("datasets/iris.csv") == b"a,b\n1,2\n"
    assert store.exists("datasets/iris.csv")


def test_empty_object_round_trips(store: ObjectStore) -> None:
    store.put("empty", b"")
    assert store.exists("empty")
    assert store.get("empty") == b""


def test_put_replaces_what_was_there(store: ObjectStore) -> None:
    store.put("models/m1/manifest.json", b"first")
    store.put("models/m1/manifest.json", b"second, longer")
    assert store.get("models/m1/manifest.json") == b"second, longer"


def test_another_store_on_the_same_space_sees_writes(make_store: StoreFactory) -> None:
    writer, reader = make_store(), make_store()
    writer.put("shared/a", b"hello")
    assert reader.get("shared/a") == b"hello"
    writer.delete("shared/a")
    assert not reader.exists("shared/a")


def test_missing_key_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.get("datasets/nothing.csv")
    sink = Sink()
    with pytest.raises(ObjectNotFound):
        store.download("datasets/nothing.csv", sink.stream())
    assert sink.writes == []
    assert not store.exists("datasets/nothing.csv")


def test_delete_removes_and_is_idempotent(store: ObjectStore) -> None:
    store.put("models/m2/x.skops", b"bytes")
    store.delete("models/m2/x.skops")
    assert not store.exists("models/m2/x.skops")
    with pytest.raises(ObjectNotFound):
        store.get("models/m2/x.skops")
    store.delete("models/m2/x.skops")
    store.delete("never/there")


def test_put_stream_stores_a_multi_part_stream_without_reading_it_whole(
    store: ObjectStore,
) -> None:
    source = Source(2 * PART_SIZE + 3 * MIB)
    size = store.put_stream("datasets/big.csv", source.stream())
    assert size == len(source.data)
    assert store.get("datasets/big.csv") == source.data
    assert all(0 <= asked < len(source.data) for asked in source.asked)


def test_download_writes_the_object_in_pieces(store: ObjectStore) -> None:
    data = os.urandom(2 * PART_SIZE + MIB)
    store.put("models/m3/big.skops", data)
    sink = Sink()
    assert store.download("models/m3/big.skops", sink.stream()) == len(data)
    assert sink.value() == data
    assert len(sink.writes) > 1


def test_download_into_a_file(store: ObjectStore) -> None:
    store.put("small", b"0123456789")
    target = io.BytesIO()
    assert store.download("small", target) == 10
    assert target.getvalue() == b"0123456789"


def test_an_object_being_written_is_not_visible_until_complete(store: ObjectStore) -> None:
    source = StallingSource(PART_SIZE + 2 * MIB, stall_at=PART_SIZE + MIB)
    with ThreadPoolExecutor(1) as pool:
        writing = pool.submit(store.put_stream, "datasets/new.csv", source.stream())
        try:
            assert source.stalled.wait(30)
            assert not store.exists("datasets/new.csv")
            with pytest.raises(ObjectNotFound):
                store.get("datasets/new.csv")
            assert list(store.list("datasets/")) == []
        finally:
            source.release.set()
        assert writing.result(30) == len(source.data)
    assert store.get("datasets/new.csv") == source.data


def test_a_reader_sees_the_old_object_while_the_new_one_is_written(store: ObjectStore) -> None:
    store.put("models/m4/manifest.json", b"old")
    source = StallingSource(PART_SIZE + 2 * MIB, stall_at=PART_SIZE + MIB)
    with ThreadPoolExecutor(1) as pool:
        writing = pool.submit(store.put_stream, "models/m4/manifest.json", source.stream())
        try:
            assert source.stalled.wait(30)
            assert store.get("models/m4/manifest.json") == b"old"
        finally:
            source.release.set()
        writing.result(30)
    assert store.get("models/m4/manifest.json") == source.data


def test_a_failed_stream_leaves_the_old_object(store: ObjectStore) -> None:
    store.put("datasets/d.csv", b"old")
    source = StallingSource(PART_SIZE + 2 * MIB, stall_at=PART_SIZE + MIB, fail=True)
    with pytest.raises(OSError, match="went away"):
        store.put_stream("datasets/d.csv", source.stream())
    assert store.get("datasets/d.csv") == b"old"
    assert list(store.list("datasets/")) == ["datasets/d.csv"]


def test_list_returns_the_keys_under_a_prefix(store: ObjectStore) -> None:
    # More keys than a listing page holds (3 on S3 here), nested, and a sibling sharing a stem.
    inside = {f"models/m{i}/manifest.json" for i in range(8)} | {"models/m0/a/b.skops"}
    for key in [*inside, "modelsx/other", "datasets/iris.csv"]:
        store.put(key, b"x")
    assert sorted(store.list("models/")) == sorted(inside)
    assert sorted(store.list("datasets/")) == ["datasets/iris.csv"]
    assert list(store.list("nothing/")) == []
    assert len(list(store.list(""))) == len(inside) + 2


def test_list_after_delete_omits_the_key(store: ObjectStore) -> None:
    store.put("datasets/a.json", b"1")
    store.put("datasets/b.json", b"2")
    store.delete("datasets/a.json")
    assert list(store.list("datasets/")) == ["datasets/b.json"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_invalid_keys_are_refused_by_every_operation(store: ObjectStore, key: str) -> None:
    operations: list[Callable[[], object]] = [
        lambda: store.put(key, b"x"),
        lambda: store.put_stream(key, io.BytesIO(b"x")),
        lambda: store.get(key),
        lambda: store.download(key, io.BytesIO()),
        lambda: store.exists(key),
        lambda: store.delete(key),
    ]
    for operation in operations:
        with pytest.raises(ValueError, match="invalid storage key"):
            operation()
    assert list(store.list("")) == []


def test_concurrent_writers_and_readers_on_one_store(store: ObjectStore) -> None:
    def round_trip(i: int) -> bytes:
        key = f"models/c{i}/manifest.json"
        store.put(key, f"model {i}".encode())
        return store.get(key)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(round_trip, range(32)))
    assert results == [f"model {i}".encode() for i in range(32)]
    assert len(list(store.list("models/"))) == 32


def test_put_in_order_stores_each_object_and_replaces_earlier_ones(store: ObjectStore) -> None:
    store.put("models/m9/manifest.json", b"old")
    artifact = os.urandom(200_000)
    store.put_in_order([("models/m9/a.model", artifact), ("models/m9/manifest.json", b"{}")])
    assert store.get("models/m9/a.model") == artifact
    assert store.get("models/m9/manifest.json") == b"{}"
    assert sorted(store.list("models/m9/")) == ["models/m9/a.model", "models/m9/manifest.json"]
