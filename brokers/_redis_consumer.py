"""A consumer of one Redis stream through a consumer group, with heartbeats and crash recovery.

Each subscription is one consumer of the group, named ``host-pid-random``. Its threads:

* the **fetcher** blocks in XREADGROUP (on a connection of its own) for as many entries as it has
  free slots, and every ``reclaim_interval`` runs a reclaim scan;
* the handler pool (``brokers._delivery``) runs the handler on each entry, ``prefetch`` at a time.
  An entry is acknowledged only when the handler settles it; an unsettled one is claimed again by
  this consumer (XCLAIM counts the delivery) and rerun with ``attempt`` one higher;
* the **heartbeat** renews ``{stream}:alive:{consumer}`` every third of its TTL, whatever the
  handlers do, so a two-hour job keeps its entry.

A reclaim scan takes entries pending on consumers whose heartbeat has expired (killed workers) and
on the ``released`` consumer (entries handed back by a stopping consumer), plus this consumer's own
entries that no runner holds (an XREADGROUP reply lost with the connection). ``cancel`` hands the
unsettled entries back to ``released`` at once, so they do not wait for a heartbeat to expire.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Generic, TypeVar

import redis
from redis.typing import StreamIdT

from brokers._backoff import Backoff
from brokers._delivery import HandlerPool, Settleable
from brokers._redis_keys import RELEASED_CONSUMER
from brokers._redis_link import (
    MAX_BLOCK,
    UNAVAILABLE,
    Entry,
    RedisLink,
    is_missing_group,
    stream_entries,
)
from brokers.base import Subscription

__all__ = ["StreamConsumer"]

log = logging.getLogger(__name__)

DeliveryT = TypeVar("DeliveryT", bound=Settleable)


def _consumer_name() -> str:
    host = socket.gethostname().replace(":", "-") or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class StreamConsumer(Subscription, Generic[DeliveryT]):
    """One consumer of ``stream`` in ``group``; the transport of a ``HandlerPool`` running
    ``handler`` on the delivery ``open_delivery`` makes of each entry."""

    def __init__(
        self,
        link: RedisLink,
        stream: str,
        group: str,
        handler: Callable[[DeliveryT], object],
        open_delivery: Callable[[StreamConsumer[DeliveryT], Entry], DeliveryT],
        *,
        prefetch: int,
        pause_before_retry: bool,
        on_cancel: Callable[[StreamConsumer[DeliveryT]], None],
    ) -> None:
        self.link = link
        self.stream = stream
        self.group = group
        self.name = _consumer_name()
        self._open = open_delivery
        self._on_cancel = on_cancel
        self._heartbeat_key = link.keys.heartbeat(stream, self.name)
        self._pool = HandlerPool(
            f"redis-run-{stream}", max(1, prefetch), handler, self, pause=pause_before_retry
        )
        self._lock = threading.Lock()
        self._abandoned: set[bytes] = set()  # under _lock
        self._beat_stop = threading.Event()
        self._fetch_client_id: int | None = None
        self._threads = [
            threading.Thread(target=self._beat_loop, name=f"redis-beat-{stream}", daemon=True),
            threading.Thread(target=self._fetch_loop, name=f"redis-fetch-{stream}", daemon=True),
        ]

    def start(self) -> StreamConsumer[DeliveryT]:
        self._beat()
        self._pool.start()
        for thread in self._threads:
            thread.start()
        return self

    # -- heartbeat ---------------------------------------------------------------------------

    def _beat(self) -> bool:
        ttl_ms = int(self.link.options.heartbeat_ttl * 1000)
        try:
            self.link.client.set(self._heartbeat_key, self.name, px=ttl_ms)
            return True
        except redis.RedisError as exc:
            log.debug("heartbeat of %s not renewed: %s", self.name, exc)
            return False

    def _beat_loop(self) -> None:
        period = self.link.options.heartbeat_ttl / 3
        while not self._beat_stop.wait(period if self._beat() else min(period, 0.5)):
            pass

    # -- fetching ----------------------------------------------------------------------------

    def _dispatch(self, entries: list[Entry]) -> None:
        for entry in entries:
            self._pool.put(entry)

    def _fetch_loop(self) -> None:
        backoff = Backoff()
        conn: redis.Redis | None = None
        need_group = False
        down = False  # logged once per outage, not once per attempt
        next_scan = 0.0
        while not self._pool.stopping.is_set():
            try:
                if conn is None:
                    conn = self.link.blocking_client()
                    self._fetch_client_id = conn.client_id()
                    if down:
                        log.info("%s reconnected to Redis at %s", self.name, self.link.where())
                        down = False
                    self._beat()
                    next_scan = 0.0  # after a reconnect, look for entries lost with it
                if need_group:
                    self.link.ensure_group(self.stream, self.group)
                    need_group = False
                if time.monotonic() >= next_scan:
                    self._scan()
                    next_scan = time.monotonic() + self.link.options.reclaim_interval
                free = self._pool.wait_for_room(until=next_scan)
                block = min(MAX_BLOCK, next_scan - time.monotonic())
                if free <= 0 or block <= 0:
                    continue
                reply = conn.xreadgroup(
                    self.group,
                    self.name,
                    {self.stream: ">"},
                    count=free,
                    block=max(1, int(block * 1000)),
                )
                self._dispatch([Entry(i, f, 1) for i, f in stream_entries(reply)])
                backoff.reset()
            except redis.ResponseError as exc:
                if not is_missing_group(exc):
                    log.error("reading %s failed: %s", self.stream, exc)
                    backoff.wait(self._pool.stopping)
                need_group = True
            except UNAVAILABLE as exc:
                if not down and not self._pool.stopping.is_set():
                    log.warning("lost Redis at %s (%s); reconnecting", self.link.where(), exc)
                down = True
                self._drop(conn)
                conn = None
                backoff.wait(self._pool.stopping)
            except redis.RedisError:
                log.exception("unexpected Redis error reading %s", self.stream)
                self._drop(conn)
                conn = None
                backoff.wait(self._pool.stopping)
        self._drop(conn)

    def _drop(self, conn: redis.Redis | None) -> None:
        self._fetch_client_id = None
        if conn is not None:
            with contextlib.suppress(redis.RedisError):
                conn.close()

    # -- reclaiming --------------------------------------------------------------------------

    def _scan(self) -> None:
        free = self._pool.free()
        if free <= 0:
            return
        free -= self._claim_own_orphans(free)
        restarted: bool | None = None
        ttl_ms = self.link.options.heartbeat_ttl * 1000
        for info in self.link.client.xinfo_consumers(self.stream, self.group):
            name = _text(info["name"])
            if name == self.name:
                continue
            if name != RELEASED_CONSUMER:
                if restarted is None:
                    restarted = self.link.recently_restarted()
                if restarted:
                    continue
            pending = int(info["pending"])
            if pending > 0 and free > 0:
                taken = self.link.claim(self.stream, self.group, name, self.name, free)
                self._dispatch(taken)  # at once: a failure later in the scan must not strand them
                free -= len(taken)
                if taken:
                    log.warning(
                        "%s took %d entries of %s from %s",
                        self.name,
                        len(taken),
                        self.stream,
                        "a stopped consumer" if name == RELEASED_CONSUMER else f"dead {name}",
                    )
            elif pending == 0 and int(info["idle"]) > ttl_ms and name != RELEASED_CONSUMER:
                # Long gone and holding nothing: forget it, so consumer names do not pile up.
                self.link.forget(self.stream, self.group, name)

    def _claim_own_orphans(self, free: int) -> int:
        """Rerun entries pending on this consumer that no runner holds; how many there were."""
        busy = {entry.id for entry in self._pool.held()}
        pending = self.link.client.xpending_range(
            self.stream, self.group, "-", "+", free + len(busy), consumername=self.name
        )
        orphans = [p for p in pending if p["message_id"] not in busy][:free]
        for p in orphans:
            got = self.link.client.xclaim(self.stream, self.group, self.name, 0, [p["message_id"]])
            attempt = int(p["times_delivered"]) + 1
            self._dispatch([Entry(i, f, attempt) for i, f in stream_entries(got)])
        return len(orphans)

    # -- the transport of the handler pool ---------------------------------------------------

    def open(self, entry: Entry) -> DeliveryT:
        return self._open(self, entry)

    def retry(self, entry: Entry) -> Entry | None:
        if self._pool.stopping.is_set():
            self._give_back([entry.id], counted=True)
            return None
        return self._claim_again(entry)

    def release(self, entry: Entry) -> None:
        self._give_back([entry.id])

    def _claim_again(self, entry: Entry) -> Entry | None:
        """Claim an unsettled entry again, which counts a delivery. None if that fails: the
        entry then stays pending on this consumer and the next scan finds it."""
        with self._lock:
            if entry.id in self._abandoned:
                return None
        try:
            got = self.link.client.xclaim(self.stream, self.group, self.name, 0, [entry.id])
        except redis.RedisError as exc:
            log.warning("could not redeliver %r of %s: %s", entry.id, self.stream, exc)
            return None
        entries = stream_entries(got)
        if not entries:
            return None
        return Entry(entry.id, entries[0][1], entry.attempt + 1)

    def _give_back(self, entry_ids: list[bytes], *, counted: bool = False) -> None:
        """Hand unsettled entries to ``released``, once each: an entry given back may already run
        elsewhere, so this consumer must not touch it again. ``counted`` (an entry its handler
        left unsettled) counts a delivery, so it comes again as the next attempt; otherwise it
        comes again as the attempt it was."""
        with self._lock:
            ids = [i for i in entry_ids if i not in self._abandoned]
            self._abandoned.update(ids)
        if not ids:
            return
        try:
            claim: list[StreamIdT] = list(ids)
            self.link.client.xclaim(
                self.stream, self.group, RELEASED_CONSUMER, 0, claim, justid=not counted
            )
        except redis.RedisError as exc:
            # They stay pending here; once the heartbeat is gone another consumer reclaims them.
            log.warning("could not hand back %d entries of %s: %s", len(ids), self.stream, exc)

    # -- settling (called by deliveries, from handler threads) ---------------------------------

    def ack(self, entry_id: bytes, *, delete: bool) -> None:
        def send() -> None:
            with self.link.client.pipeline(transaction=True) as pipe:
                pipe.xack(self.stream, self.group, entry_id)
                if delete:
                    pipe.xdel(self.stream, entry_id)
                pipe.execute()

        self.link.call("ack", send, timeout=self.link.options.settle_timeout)

    # -- stopping ----------------------------------------------------------------------------

    def cancel(self, timeout: float | None = None) -> None:
        if not self._pool.stop():
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        self._stop_fetcher(deadline)
        left = self._pool.join(deadline)
        # Handlers still running: their entries go back now; a late ack still counts.
        self._give_back([entry.id for entry in left])
        self._beat_stop.set()
        try:
            self.link.client.delete(self._heartbeat_key)
            self.link.forget(self.stream, self.group, self.name)
        except redis.RedisError as exc:
            log.debug("consumer %s not removed: %s", self.name, exc)
        self._on_cancel(self)

    def _stop_fetcher(self, deadline: float | None) -> None:
        fetcher = self._threads[1]
        while fetcher.is_alive():
            client_id = self._fetch_client_id
            if client_id is not None:
                # Wakes the blocked XREADGROUP now instead of at the end of its block.
                with contextlib.suppress(redis.RedisError):
                    self.link.client.client_unblock(client_id)
            fetcher.join(0.05)
            if deadline is not None and time.monotonic() >= deadline:
                break


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
