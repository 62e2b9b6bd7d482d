"""A fit process ends when its worker does, even in the middle of a fit that reports nothing: a
SIGKILLed worker leaves no one to stop it, and its parent (the forkserver) lives while it does."""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.connection import Connection

from workers.fitting import exit_with_worker

_context = multiprocessing.get_context("forkserver")


def _fit_that_reports_nothing(conn: Connection) -> None:
    exit_with_worker(conn)
    conn.send(conn.recv())  # a task arriving is no reason to stop
    time.sleep(120)  # a long fit with no progress to send


def test_a_fit_process_ends_once_its_worker_end_of_the_pipe_closes() -> None:
    ours, theirs = _context.Pipe()
    child = _context.Process(target=_fit_that_reports_nothing, args=(theirs,), daemon=True)
    child.start()
    theirs.close()
    try:
        ours.send("task")
        assert ours.poll(30) and ours.recv() == "task"
        child.join(0.5)
        assert child.is_alive()  # still fitting while its worker lives

        started = time.monotonic()
        ours.close()  # what a SIGKILLed worker's exit does
        child.join(10)
        assert not child.is_alive(), "the fit went on without its worker"
        assert time.monotonic() - started < 5
    finally:
        if child.is_alive():
            child.kill()
            child.join()
