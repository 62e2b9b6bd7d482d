"""Live event watching for the Redis broker: a plain XREAD on the events stream, no group.

Each watcher remembers the last id it saw and blocks in XREAD for anything after it, so every
watcher sees every event in order, and a watcher that lost its connection for a moment catches up
from where it was instead of skipping what was published meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import redis

from brokers._backoff import Backoff
from brokers._redis_link import MAX_BLOCK, UNAVAILABLE, RedisLink, stream_entries
from brokers.base import Subscription, WatchHandler

__all__ = ["StreamWatcher"]

log = logging.getLogger(__name__)


class StreamWatcher(Subscription):
    """Calls ``handler`` with the ``body`` of every entry added to ``stream`` from now on."""

    def __init__(
        self,
        link: RedisLink,
        stream: str,
        handler: WatchHandler,
        *,
        on_cancel: Callable[[StreamWatcher], None],
    ) -> None:
        self._link = link
        self._stream = stream
        self._handler = handler
        self._on_cancel = on_cancel
        self._stopping = threading.Event()
        self._client_id: int | None = None
        # Resolved before returning, so an event published right after subscribing is seen.
        self._last: bytes | None = self._last_id()
        self._thread = threading.Thread(target=self._loop, name="redis-watch", daemon=True)

    def start(self) -> StreamWatcher:
        self._thread.start()
        return self

    def _last_id(self) -> bytes | None:
        try:
            info = self._link.client.xinfo_stream(self._stream)
        except redis.ResponseError:
            return b"0-0"  # no stream yet: everything added to it is new
        except redis.RedisError:
            return None  # resolved once connected
        last = info["last-generated-id"]
        return last.encode() if isinstance(last, str) else bytes(last)

    def _loop(self) -> None:
        backoff = Backoff()
        conn: redis.Redis | None = None
        down = False  # logged once per outage, not once per attempt
        while not self._stopping.is_set():
            try:
                if conn is None:
                    conn = self._link.blocking_client()
                    self._client_id = conn.client_id()
                    if down:
                        log.info("watcher reconnected to Redis at %s", self._link.where())
                        down = False
                if self._last is None:
                    self._last = self._last_id()
                    continue
                reply = conn.xread(
                    {self._stream: self._last}, count=100, block=int(MAX_BLOCK * 1000)
                )
                for entry_id, fields in stream_entries(reply):
                    self._last = entry_id
                    self._deliver(fields.get(b"body", b""))
                backoff.reset()
            except UNAVAILABLE as exc:
                if not down and not self._stopping.is_set():
                    log.warning("watcher lost Redis at %s (%s)", self._link.where(), exc)
                down = True
                self._drop(conn)
                conn = None
                backoff.wait(self._stopping)
            except redis.RedisError as exc:
                log.error("watching %s failed: %s", self._stream, exc)
                self._drop(conn)
                conn = None
                backoff.wait(self._stopping)
        self._drop(conn)

    def _deliver(self, body: bytes) -> None:
        if self._stopping.is_set():
            return
        try:
            self._handler(body)
        except Exception:
            log.exception("event watcher failed")

    def _drop(self, conn: redis.Redis | None) -> None:
        self._client_id = None
        if conn is not None:
            with contextlib.suppress(redis.RedisError):
                conn.close()

    def cancel(self, timeout: float | None = None) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._thread.is_alive() and self._thread is not threading.current_thread():
            client_id = self._client_id
            if client_id is not None:
                with contextlib.suppress(redis.RedisError):
                    self._link.client.client_unblock(client_id)
            self._thread.join(0.05)
            if deadline is not None and time.monotonic() >= deadline:
                break
        self._on_cancel(self)
