"""Wakes the streams watching a job when something new was recorded for it.

The hub carries no events, only "look again": a stream reads the job store, the one source of
truth, so events recorded by another gateway or in another order can never be skipped or doubled.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

__all__ = ["Hub"]


class Hub:
    """Per-job wake-ups for streams, used on the event loop's thread only."""

    def __init__(self) -> None:
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)

    def subscribe(self, job_id: str) -> asyncio.Event:
        flag = asyncio.Event()
        self._waiters[job_id].add(flag)
        return flag

    def unsubscribe(self, job_id: str, flag: asyncio.Event) -> None:
        waiters = self._waiters.get(job_id)
        if waiters is not None:
            waiters.discard(flag)
            if not waiters:
                del self._waiters[job_id]

    def notify(self, job_id: str) -> None:
        for flag in self._waiters.get(job_id, ()):
            flag.set()
