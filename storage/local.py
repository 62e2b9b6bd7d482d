"""The local-directory object store: the default, under the data directory."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from functools import cache
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from storage.base import ObjectStore, check_key
from storage.errors import IntegrityError, ObjectNotFound, StorageUnavailable

__all__ = ["LocalObjectStore"]

_CHUNK = 1024 * 1024
_TEMP = ".tmp"
# A temporary file nobody has written to for this long belongs to a write that died: a live
# write touches its file with every chunk.
_STALE = 3600.0


@cache
def _syncs() -> ThreadPoolExecutor:
    """Threads that sync a write's files side by side (``put_in_order``), shared by every store."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="fsync")


class LocalObjectStore(ObjectStore):
    """Objects as files under ``root``; writes go to a temporary file renamed into place.

    Temporary files live in ``root/.tmp`` (no key can name it), never beside the objects, so a
    process killed mid-write leaves nothing in a model's folder; what such writes left is removed
    when a store is opened, once it has not been written to for ``_STALE`` seconds. Deleting the
    last object of a folder below the top level (a model's) removes the folder too.
    File system errors become the storage error tree here, naming keys, never server paths.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._temp = self.root / _TEMP
        self._temp.mkdir(exist_ok=True)
        self._sweep()

    def _sweep(self) -> None:
        """Remove the temporary files of writes that died (older ones lay beside their objects)."""
        cutoff = time.time() - _STALE
        for path in self.root.rglob(f"{_TEMP}-*"):
            # One gone meanwhile, or not ours to remove, is left to the next open.
            with suppress(OSError):
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()

    @classmethod
    def from_url(cls, url: str) -> LocalObjectStore:
        return cls(Path(unquote(urlsplit(url).path)))

    def check(self) -> None:
        if not (self.root.is_dir() and os.access(self.root, os.W_OK | os.X_OK)):
            raise StorageUnavailable("local storage: the data directory is missing or not writable")

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"invalid storage key {key!r}")
        return path

    def _check_root(self) -> None:
        # A removed storage directory is an outage, not a store that has emptied.
        if not self.root.is_dir():
            raise StorageUnavailable("the storage directory is missing")

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Translate the file system's errors into the storage error tree at this one boundary."""
        try:
            yield
        except FileNotFoundError:
            self._check_root()
            raise ObjectNotFound(key) from None
        except (IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
            raise IntegrityError(
                f"{key} is not a stored object: something else is in its place"
            ) from exc
        except PermissionError as exc:
            raise StorageUnavailable(f"the storage directory refused access to {key}") from exc
        except OSError as exc:
            raise StorageUnavailable(
                f"the storage directory failed on {key}: {exc.strerror or exc}"
            ) from exc

    def _write(self, key: str, fill: BinaryIO | bytes) -> int:
        path, tmp, size = self._stage(key, fill, sync=True)
        self._commit(key, path, tmp)
        return size

    def _stage(self, key: str, fill: BinaryIO | bytes, *, sync: bool) -> tuple[Path, str, int]:
        """Write ``fill`` into a temporary file, synced to disk if ``sync``: the object's path,
        the temporary file's and the size. The caller commits it (``_commit``) or removes it."""
        path = self._path(key)
        self._check_root()
        with self._errors(key):
            # Folders below the root only: a root removed meanwhile stays an outage (the
            # FileNotFoundError), not a fresh empty store that later writes would go to.
            self._temp.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._temp, prefix=f"{_TEMP}-")
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(fill, bytes):
                    with self._errors(key):
                        out.write(fill)
                else:
                    # The source's own errors (a client that went away) pass through as they are.
                    while chunk := fill.read(_CHUNK):
                        with self._errors(key):
                            out.write(chunk)
                with self._errors(key):
                    out.flush()
                    if sync:
                        os.fsync(out.fileno())
                size = out.tell()
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path, tmp, size

    def _commit(self, key: str, path: Path, tmp: str) -> None:
        """Rename a staged temporary file into place (or remove it, if that fails)."""
        try:
            with self._errors(key):
                try:
                    self._folders(path)
                    os.replace(tmp, path)
                except FileNotFoundError:
                    # Its folder was removed meanwhile (a delete emptied it): make it again.
                    self._folders(path)
                    os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_in_order(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Every object written and synced to disk at once (the syncs run side by side, which
        costs about one sync, not one each), then each renamed into place in order: as safe
        as putting them one after the other, since none is visible before all are on disk."""
        staged: list[tuple[str, Path, str]] = []
        try:
            for key, data in items:
                path, tmp, _ = self._stage(key, data, sync=False)
                staged.append((key, path, tmp))
            self._sync_all(staged)
            while staged:
                key, path, tmp = staged[0]
                self._commit(key, path, tmp)
                staged.pop(0)
        finally:
            for _, _, tmp in staged:
                Path(tmp).unlink(missing_ok=True)

    def _sync_all(self, staged: Sequence[tuple[str, Path, str]]) -> None:
        def sync(key: str, tmp: str) -> None:
            with self._errors(key):
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

        others = [_syncs().submit(sync, key, tmp) for key, _, tmp in staged[1:]]
        try:
            if staged:
                sync(staged[0][0], staged[0][2])
        finally:
            for done in others:
                done.result()  # each raises its own error, once every sync has ended

    def _folders(self, path: Path) -> None:
        # Folders below the root only: a root removed meanwhile stays an outage (the
        # FileNotFoundError), not a fresh empty store that later writes would go to.
        parts = path.parent.relative_to(self.root).parts
        for depth in range(1, len(parts) + 1):
            self.root.joinpath(*parts[:depth]).mkdir(exist_ok=True)

    def put(self, key: str, data: bytes) -> None:
        self._write(key, data)

    def put_stream(self, key: str, source: BinaryIO) -> int:
        return self._write(key, source)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        with self._errors(key):
            return path.read_bytes()

    def download(self, key: str, target: BinaryIO) -> int:
        path = self._path(key)
        size = 0
        with self._errors(key):
            source = path.open("rb")
        with source:
            while True:
                with self._errors(key):
                    chunk = source.read(_CHUNK)
                if not chunk:
                    return size
                target.write(chunk)  # the caller's own errors pass through as they are
                size += len(chunk)

    def exists(self, key: str) -> bool:
        path = self._path(key)
        with self._errors(key):
            if path.is_file():
                return True
        self._check_root()
        return False

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._errors(key):
            path.unlink(missing_ok=True)
        if path.parent.parent != self.root and path.parent != self.root:
            with suppress(OSError):  # removed only once empty: a deleted model leaves no folder
                path.parent.rmdir()

    def list(self, prefix: str) -> Iterator[str]:
        self._check_root()
        base = self.root / prefix if prefix else self.root
        folder = base if prefix.endswith("/") or not prefix else base.parent
        with self._errors(prefix):
            if not folder.is_dir():
                return
            for path in folder.rglob("*"):
                if path.is_file() and not path.name.startswith(".tmp-"):
                    key = path.relative_to(self.root).as_posix()
                    if key.startswith(prefix):
                        yield key
