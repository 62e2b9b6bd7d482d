"""One data directory, one server: a server whose broker keeps no jobs (the embedded one) owns
its data directory, since at start it queues again every job its job store holds unfinished, and
cancels reach only the workers of its own broker. A second such server on the same directory
would run those jobs twice and cancel nothing; it refuses to start instead, naming the first.

The lock is an ``flock`` on ``mlgate.lock`` in the data directory, held while the server runs. The
kernel releases it when the process ends however it ends, so a lock file left by a process that
died blocks nobody; the pid written in it is only for the message.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

__all__ = ["LOCK_FILE", "DataDirInUse", "DataDirLock"]

LOCK_FILE = "mlgate.lock"


class DataDirInUse(OSError):
    """Another server holds the data directory."""

    def __init__(self, data_dir: Path, pid: str) -> None:
        holder = f"mlgate (pid {pid})" if pid else "another mlgate"
        super().__init__(
            errno.EBUSY,
            f"the data directory {data_dir} is in use by {holder}, which serves its jobs with "
            "its own embedded broker: stop it, or give this one another --data-dir "
            "(MLGATE_DATA_DIR)",
        )

    def __str__(self) -> str:
        return str(self.strerror)


class DataDirLock:
    """The lock on ``data_dir``: ``acquire`` before serving, ``release`` once stopped."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise ``DataDirInUse`` naming the process that holds it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirInUse(self.data_dir, self._holder()) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _holder(self) -> str:
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock
