"""Exponential backoff with jitter, for every retry loop of every broker.

Jitter keeps a fleet of workers from reconnecting in lockstep after a broker restart; the floor of
half the delay keeps a loop that keeps failing from spinning.
"""

from __future__ import annotations

import random
import threading
import time

__all__ = ["Backoff", "backoff"]


def backoff(failures: int, *, base: float = 0.1, cap: float = 5.0) -> float:
    """Seconds to wait before retry number ``failures`` (0 first): exponential, capped, jittered."""
    delay = min(cap, base * 2**failures)
    return random.uniform(delay / 2, delay)


class Backoff:
    """The failures of one retry loop so far, and the wait each next retry is due."""

    def __init__(self, base: float = 0.1, cap: float = 5.0) -> None:
        self._base = base
        self._cap = cap
        self._failures = 0

    def reset(self) -> None:
        self._failures = 0

    def next_delay(self) -> float:
        delay = backoff(self._failures, base=self._base, cap=self._cap)
        self._failures += 1
        return delay

    def wait(self, stop: threading.Event, *, deadline: float | None = None) -> None:
        """Wait out the next delay (at most until ``deadline``), or until ``stop`` is set."""
        delay = self.next_delay()
        if deadline is not None:
            delay = min(delay, max(0.0, deadline - time.monotonic()))
        stop.wait(delay)
