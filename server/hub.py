"""Hands each job's events, read once from the job store, to every stream following the job.

The job store stays the one source of truth: a wake-up only says "look again", and each followed
job has one reader that reads the events after the last it saw and hands them to all the streams
following it. A thousand watchers of one job cost one read per wake-up, not a thousand.

Most wake-ups need no read at all. One that names the event it is for (its seq) is ignored by a
feed that has that event already (each event comes to a gateway twice, by the broker's durable
and live paths). One that brings the event as the job store just wrote it, with the seq of the
event it follows in the job's log, is taken as read by a feed that has read up to that seq: the
log holds nothing between the two. A feed anywhere else reads, as for any wake-up.

Nothing is missed: a job's feed is registered before its first read, and every writer records
before it notifies, so an event is either in a read already made or its wake-up is still to come.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

from mlgate.events import is_terminal
from mlgate.v1 import jobs_pb2

__all__ = ["Hub"]

ReadEvents = Callable[[str, int], list[jobs_pb2.JobEvent]]


class _Feed:
    """One job's events read so far, in order, and the streams following them."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.events: list[jobs_pb2.JobEvent] = []
        self.ended = False
        self.error: Exception | None = None
        self.followers = 0
        self.stale = asyncio.Event()
        # Replaced by a fresh one on every change, so a stream cannot miss a change by waiting late.
        self.changed = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None

    @property
    def last_seq(self) -> int:
        return self.events[-1].seq if self.events else 0

    def add(self, new: list[jobs_pb2.JobEvent]) -> None:
        """Take the log's events that follow those read so far: a read may overlap events
        handed over while it was under way."""
        last = self.last_seq
        new = [seen for seen in new if seen.seq > last]
        if new:
            self.events += new
            self.ended = is_terminal(new[-1].state)
            self.publish()

    def publish(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


class Hub:
    """Per-job feeds, used on the event loop's thread only (``notify`` via call_soon_threadsafe)."""

    def __init__(self, read_events: ReadEvents) -> None:
        self._read_events = read_events
        self._feeds: dict[str, _Feed] = {}
        #: Told the parent's id when a child job's end is recorded (``server.fanout``).
        self.on_child_ended: Callable[[str], None] | None = None

    def child_ended(self, parent_job_id: str) -> None:
        if self.on_child_ended is not None:
            self.on_child_ended(parent_job_id)

    def notify(self, job_id: str, seq: int = 0) -> None:
        """Something new may have been recorded for the job (its event ``seq``, if non-zero):
        its reader reads again, unless it has that event already."""
        feed = self._feeds.get(job_id)
        if feed is not None and (not seq or seq > feed.last_seq):
            feed.stale.set()

    def extend(self, job_id: str, event: jobs_pb2.JobEvent, after_seq: int) -> None:
        """``event`` was written to the job's log right after its event ``after_seq``: a feed
        that has read up to there takes it without reading; one anywhere else reads again."""
        feed = self._feeds.get(job_id)
        if feed is None or feed.ended:
            return
        if feed.last_seq == after_seq:
            feed.add([event])
        elif event.seq > feed.last_seq:
            feed.stale.set()

    async def follow(
        self, job_id: str, after_seq: int, first: jobs_pb2.JobEvent | None = None
    ) -> AsyncGenerator[jobs_pb2.JobEvent]:
        """The job's events with seq above ``after_seq``, live, until its terminal event; at
        once if the job has ended already and ``after_seq`` is at or past its last event.

        ``first`` is the first event of a job not recorded yet: following it before it is
        recorded needs no read until the next wake-up, as nothing can have been missed."""
        feed = self._feeds.get(job_id)
        if feed is None:
            feed = self._feeds[job_id] = _Feed(job_id)
            if first is not None:
                feed.events.append(first)
            feed.reader = asyncio.create_task(self._read(feed, woken=first is not None))
        feed.followers += 1
        try:
            sent = 0
            while True:
                changed = feed.changed
                while sent < len(feed.events):
                    seen = feed.events[sent]
                    sent += 1
                    if seen.seq > after_seq:
                        yield seen
                if feed.error is not None:
                    raise feed.error
                if feed.ended:
                    return
                await changed.wait()
        finally:
            feed.followers -= 1
            if not feed.followers:
                self._forget(feed)
                if feed.reader is not None:
                    feed.reader.cancel()

    def _forget(self, feed: _Feed) -> None:
        if self._feeds.get(feed.job_id) is feed:
            del self._feeds[feed.job_id]

    async def _read(self, feed: _Feed, *, woken: bool) -> None:
        """Read whenever woken (at once unless ``woken``) until the job's terminal event; an
        error ends the feed for all."""
        try:
            if woken:
                await feed.stale.wait()
            while True:
                feed.stale.clear()
                new = await asyncio.to_thread(self._read_events, feed.job_id, feed.last_seq)
                feed.add(new)
                if feed.ended:
                    return
                await feed.stale.wait()
        except Exception as exc:
            feed.error = exc
            self._forget(feed)  # later streams of this job start afresh, not with this error
            feed.publish()
