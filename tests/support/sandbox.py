"""A child process per function call, forked from a warm zygote, so that a crash is a result, not a
dead test run.

The zygote is a Python process of its own that imports the heavy modules once and forks a child
for each call (a few milliseconds), so memory one call corrupted cannot crash a later one and
each call's memory growth is its own. It runs with glibc's malloc checking on where the system
has it (``libc_malloc_debug``): every heap block gets a guard byte, so even a one-byte write past
the end of an array aborts the child when the array is freed, instead of corrupting the heap
silently. After the call, the child frees what it allocated and walks the heap before it
answers. A child that dies (a signal, an abort from the C library) or hangs past its timeout is
reported as ``Died``.

It is not multiprocessing's forkserver: that one is shared by the whole test process (the fit
pool uses it), with one environment and one set of preloaded modules.
"""

from __future__ import annotations

import ctypes
import gc
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["Died", "Sandbox"]

_MALLOC_DEBUG = Path("/lib/x86_64-linux-gnu/libc_malloc_debug.so.0")


@dataclass(frozen=True)
class Died:
    """The call did not return: how the child ended ("signal 6" is an abort) or "hung"."""

    how: str


def _send(stream: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError
    (length,) = struct.unpack("<Q", head)
    return pickle.loads(stream.read(length))


def _memory() -> dict[str, int]:
    """This process's resident and peak resident memory, in KiB (Linux)."""
    with open("/proc/self/status") as status:
        fields = (line.split(":") for line in status)
        return {k: int(v.split()[0]) for k, v in fields if k in ("VmRSS", "VmHWM")}


def _child(function: Callable[..., Any], args: tuple[Any, ...], out: int) -> None:
    try:
        before = _memory()["VmRSS"]
        # The fork inherited the zygote's peak: reset it, so the call's own growth is measured.
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        result = function(*args)
        grown = _memory()["VmHWM"] - before
        del args
        gc.collect()
        ctypes.CDLL(None).malloc_trim(0)
        answer: Any = ("returned", result, grown)
    except BaseException:
        answer = ("raised", traceback.format_exc(), 0)
    with os.fdopen(out, "wb") as stream:
        _send(stream, answer)
    os._exit(0)


def _run_one(function: Callable[..., Any], args: tuple[Any, ...], timeout: float) -> Any:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        _child(function, args, write)
    os.close(write)
    chunks = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0 and select.select([read], [], [], left)[0]:
        chunk = os.read(read, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read)
        return ("died", "hung", 0)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if os.WIFSIGNALED(status):
        return ("died", f"signal {os.WTERMSIG(status)}", 0)
    if os.WEXITSTATUS(status) != 0 or len(data) < 8:
        return ("died", f"exit code {os.WEXITSTATUS(status)}", 0)
    return pickle.loads(data[8:])


def _zygote() -> None:
    """The zygote's loop: a call in on stdin, its outcome out on stdout, until stdin closes."""
    for module in sys.argv[1:]:
        __import__(module)
    # Children's collections then skip what the zygote imported, instead of touching (and so
    # copying) every page of it.
    gc.freeze()
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            function, args, timeout = _receive(requests)
        except EOFError:
            return
        _send(replies, _run_one(function, args, timeout))


class Sandbox:
    """Runs ``function(*args)`` in a fresh child of a zygote that imported ``preload``."""

    def __init__(self, preload: Sequence[str] = ()) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        # One thread each: children are forked, and results should not depend on scheduling.
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        if _MALLOC_DEBUG.exists():
            env.update(LD_PRELOAD=str(_MALLOC_DEBUG), GLIBC_TUNABLES="glibc.malloc.check=3")
        command = [sys.executable, "-c", "from tests.support.sandbox import _zygote; _zygote()"]
        self._zygote = subprocess.Popen(
            [*command, *preload], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )

    def run(
        self, function: Callable[..., Any], *args: Any, timeout: float = 30.0
    ) -> tuple[Any, int] | Died:
        """The call's result and how far it grew the child's resident memory at its peak (KiB),
        or how the child died. A call that raised raises here, with the child's traceback."""
        assert self._zygote.stdin is not None and self._zygote.stdout is not None
        _send(self._zygote.stdin, (function, args, timeout))
        kind, value, grown = _receive(self._zygote.stdout)
        if kind == "died":
            return Died(value)
        if kind == "raised":
            raise RuntimeError(f"the sandboxed call raised:\n{value}")
        return value, grown

    def close(self) -> None:
        """Stop the zygote."""
        if self._zygote.stdin is not None:
            self._zygote.stdin.close()
        self._zygote.wait(timeout=30)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
