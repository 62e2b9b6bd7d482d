"""The worker's fit pool: long-lived child processes that run fits (``workers.fitting``), so a fit
can be stopped at once, bounded in time and memory, and can crash without taking its worker along.

Children are forked from a forkserver that imported scikit-learn once, so starting or replacing
one costs a fork, not an import. A child that was stopped (cancel, time limit) or died is replaced
before its slot takes the next fit.

``FitPool.run`` raises:

* ``FitStopped`` when ``stop()`` said so (the job was cancelled): the child is killed at once;
* an ``MLGateError`` for a fit that failed: DEADLINE_EXCEEDED past its time limit,
  RESOURCE_EXHAUSTED past its memory limit, or what the fit itself raised;
* ``ChildDied`` when the child ended without an answer (a native crash, the OOM killer): the job
  is worth another attempt, as if its worker had died;
* ``StorageUnavailable`` when the child could not read the object store.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import overload

from mlgate.errors import DeadlineExceeded, MLGateError, from_status
from mlgate.failures import Backends
from storage.base import ObjectStore
from storage.errors import StorageUnavailable
from workers.fitting import serve
from workers.messages import (
    FitAnswer,
    FitFailed,
    FitProgress,
    FitTask,
    Fitted,
    StoreAway,
    TrialScored,
    TrialTask,
)

__all__ = ["ChildDied", "FitPool", "FitStopped"]

log = logging.getLogger(__name__)

# How often a waiting slot looks at its job's cancellation and time limit: bounds the latency of
# a cancel, at the cost of a wake-up per interval while a fit runs.
_POLL = 0.05

_context = multiprocessing.get_context("forkserver")


class FitStopped(Exception):
    """The fit was stopped because its job no longer wants it."""


class ChildDied(Exception):
    """The child process ended in the middle of a fit, without an answer."""


class _Child:
    """One child process and the worker's end of its pipe."""

    def __init__(self, store: ObjectStore, backends: Backends) -> None:
        self.conn, theirs = _context.Pipe()
        self.process: BaseProcess = _context.Process(
            target=serve, args=(theirs, store, backends), name="mlgate-fit", daemon=True
        )
        self.process.start()
        theirs.close()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()


Progress = Callable[[int, float], None]


class FitPool:
    """``size`` children, each running one fit at a time; ``backends`` name the stores in what
    they report (``mlgate.failures``)."""

    def __init__(self, store: ObjectStore, size: int, backends: Backends) -> None:
        self._store = store
        self._size = size
        self._backends = backends
        self._idle: queue.Queue[_Child] = queue.Queue()
        self._lock = threading.Lock()
        self._running: dict[int, _Child] = {}  # by slot thread id, for pids()
        self._closed = False

    def start(self) -> None:
        # Takes effect when the forkserver starts, with the first child of this process.
        _context.set_forkserver_preload(["workers.fitting", "workers.fitwarm"])
        for _ in range(self._size):
            self._idle.put(_Child(self._store, self._backends))

    def close(self) -> None:
        """Kill every child, idle or fitting."""
        with self._lock:
            self._closed = True
            children = list(self._running.values())
        while True:
            try:
                children.append(self._idle.get_nowait())
            except queue.Empty:
                break
        for child in children:
            child.kill()

    def pids(self) -> list[int]:
        """The children's process ids (for tests and diagnostics)."""
        with self._lock:
            busy = [c.pid for c in self._running.values()]
        idle = [c.pid for c in list(self._idle.queue)]
        return [pid for pid in (*busy, *idle) if pid is not None]

    @overload
    def run(
        self, task: FitTask, progress: Progress, *, stop: Callable[[], bool], timeout: float
    ) -> Fitted: ...

    @overload
    def run(
        self, task: TrialTask, progress: Progress, *, stop: Callable[[], bool], timeout: float
    ) -> TrialScored: ...

    def run(
        self,
        task: FitTask | TrialTask,
        progress: Progress,
        *,
        stop: Callable[[], bool],
        timeout: float,
    ) -> Fitted | TrialScored:
        """Run ``task`` in a free child; ``progress(stage, fraction)`` relays the child's reports.
        ``stop()`` is asked every few tens of milliseconds; true kills the fit (FitStopped)."""
        child = self._idle.get()
        if not child.process.is_alive():
            # It died while idle (the OOM killer, an operator): no fit of ours to blame for it.
            log.warning("fit process %s had ended while idle; starting another", child.pid)
            child.kill()
            child = _Child(self._store, self._backends)
        slot = threading.get_ident()
        with self._lock:
            self._running[slot] = child
        keep = False
        try:
            answer = self._wait(child, task, progress, stop, timeout)
            keep = True
            return answer
        except StorageUnavailable:
            keep = True
            raise
        except MLGateError as exc:
            # A fit that ran out of time or memory leaves its child in no state to go on.
            keep = exc.code not in ("DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")
            raise
        finally:
            with self._lock:
                del self._running[slot]
                closed = self._closed
            if keep and not closed:
                self._idle.put(child)
            else:
                child.kill()
                if not closed:
                    self._idle.put(_Child(self._store, self._backends))

    def _wait(
        self,
        child: _Child,
        task: FitTask | TrialTask,
        progress: Progress,
        stop: Callable[[], bool],
        timeout: float,
    ) -> Fitted | TrialScored:
        deadline = time.monotonic() + timeout
        try:
            child.conn.send(task)
        except OSError:
            raise ChildDied("the fit process was gone before the fit started") from None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(
                    f"the fit took longer than its time limit of {_seconds(timeout)} "
                    "(timeout_seconds, at most MLGATE_TRAIN_TIMEOUT); it was stopped"
                )
            if stop():
                raise FitStopped(task.job_id)
            ready = wait([child.conn, child.process.sentinel], min(_POLL, left))
            if child.conn in ready:
                try:
                    message = child.conn.recv()
                except (EOFError, OSError):
                    message = None
                if isinstance(message, FitProgress):
                    progress(message.stage, message.fraction)
                    continue
                if message is not None:
                    return _answer(message)
            if ready:
                child.process.join(1.0)
                raise ChildDied(
                    f"the fit process ended without an answer (exit code "
                    f"{child.process.exitcode}): a crash in native code or the OOM killer"
                )


def _answer(answer: FitAnswer) -> Fitted | TrialScored:
    match answer:
        case Fitted() | TrialScored():
            return answer
        case StoreAway(message):
            raise StorageUnavailable(message)
        case FitFailed(code, message):
            raise from_status(code, message)


def _seconds(value: float) -> str:
    return f"{value:g} s"
