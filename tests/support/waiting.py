"""Waiting on state in another process, which nothing signals to a test."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

__all__ = ["wait_for"]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until ``condition()`` holds; fail the test naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout}s")
        time.sleep(0.05)
