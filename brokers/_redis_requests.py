"""Request/reply on Redis: a list per request queue, a list per requester for its replies.

A requester pushes its requests from a sender thread of its own (``send`` never blocks the
caller), many per round trip, and reads its replies from its own list on a reader thread, many
per round trip. Workers pop requests (BLMPOP) as their handler threads free up: a popped request
is gone from Redis, so it is answered at most once, and a worker that dies with it costs its
caller an error at the caller's deadline. Both lists expire while unused, so a requester that
died leaves nothing behind, and every request carries its deadline: a worker drops it unanswered
once that has passed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import uuid
from typing import Any

import redis

from brokers._backoff import Backoff
from brokers._delivery import HandlerPool
from brokers._redis_keys import Keys
from brokers._redis_link import UNAVAILABLE, RedisLink
from brokers._requests import Outstanding, ServedRequest, request_pool
from brokers.base import (
    IncomingRequest,
    Reply,
    ReplyHandler,
    Request,
    Requester,
    RequestHandler,
    Subscription,
)
from brokers.errors import BrokerClosed, BrokerUnavailable

__all__ = ["RedisRequester", "RequestServer"]

log = logging.getLogger("brokers.redis")

#: A request or reply list nobody pushed to for this long is deleted.
_UNUSED_TTL_MS = 60_000
#: How long a blocking pop waits before its loop looks around (stopping?).
_BLOCK = 1.0
#: The most requests or replies moved in one round trip.
_MAX_BATCH = 256


def _encode_request(request: Request, reply_to: str) -> bytes:
    header = json.dumps(
        [request.correlation_id, reply_to, request.deadline, [list(h) for h in request.headers]]
    ).encode()
    return len(header).to_bytes(4, "big") + header + request.body


def _decode_request(data: bytes) -> tuple[Request, str]:
    size = int.from_bytes(data[:4], "big")
    correlation_id, reply_to, deadline, headers = json.loads(data[4 : 4 + size])
    pairs = tuple((str(k), str(v)) for k, v in headers)
    return Request(str(correlation_id), data[4 + size :], float(deadline), pairs), str(reply_to)


def _encode_reply(correlation_id: str, body: bytes) -> bytes:
    key = correlation_id.encode()
    return len(key).to_bytes(2, "big") + key + body


def _decode_reply(data: bytes) -> Reply:
    size = int.from_bytes(data[:2], "big")
    return Reply(data[2 : 2 + size].decode(errors="replace"), data[2 + size :])


def _popped(response: Any) -> list[bytes]:
    """The values of a BLMPOP reply (None when it timed out)."""
    if not response:
        return []
    values: list[bytes] = response[1]
    return values


class RedisRequester(Requester):
    """Sends on one thread, receives on another; see the module docstring."""

    def __init__(self, link: RedisLink, keys: Keys, on_reply: ReplyHandler) -> None:
        self._link = link
        self._keys = keys
        self.outstanding = Outstanding(on_reply)
        self.reply_key = keys.replies(uuid.uuid4().hex)
        self._outbox: queue.SimpleQueue[tuple[str, Request] | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._sender = threading.Thread(target=self._send_loop, name="redis-requests", daemon=True)
        self._reader = threading.Thread(target=self._read_loop, name="redis-replies", daemon=True)

    def start(self) -> RedisRequester:
        self._sender.start()
        self._reader.start()
        return self

    def send(self, queue_name: str, request: Request) -> None:
        if self._stopping.is_set():
            raise BrokerClosed("the requester is closed")
        self._link.check_open()
        if not self._link.reachable:
            raise BrokerUnavailable(f"Redis at {self._link.where()} is unreachable")
        self.outstanding.add(request.correlation_id, request.deadline)
        self._outbox.put((queue_name, request))

    def _send_loop(self) -> None:
        while (first := self._outbox.get()) is not None:
            batch = [first]
            while len(batch) < _MAX_BATCH:
                try:
                    more = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._stopping.set()
                    break
                batch.append(more)
            self._push(batch)
            if self._stopping.is_set():
                return

    def _push(self, batch: list[tuple[str, Request]]) -> None:
        by_key: dict[str, list[bytes]] = {}
        for queue_name, request in batch:
            by_key.setdefault(self._keys.requests(queue_name), []).append(
                _encode_request(request, self.reply_key)
            )
        try:
            with self._link.client.pipeline(transaction=False) as pipe:
                for key, values in by_key.items():
                    pipe.rpush(key, *values)
                    pipe.pexpire(key, _UNUSED_TTL_MS)
                pipe.execute()
            self._link.reachable = True
        except redis.RedisError as exc:
            if isinstance(exc, UNAVAILABLE):
                self._link.reachable = False
            error = BrokerUnavailable(f"Redis at {self._link.where()} did not take it ({exc})")
            for _queue, request in batch:
                self.outstanding.fail(request.correlation_id, error)

    def _read_loop(self) -> None:
        client: redis.Redis | None = None
        backoff = Backoff(cap=2.0)
        while not self._stopping.is_set():
            try:
                if client is None:
                    client = self._link.blocking_client()
                response = client.blmpop(
                    _BLOCK, 1, self.reply_key, direction="LEFT", count=_MAX_BATCH
                )
                backoff.reset()
            except redis.RedisError as exc:
                if client is not None:
                    with contextlib.suppress(redis.RedisError):
                        client.close()
                client = None
                if self._stopping.is_set():
                    break
                log.warning("reading replies from Redis failed: %s", exc)
                self.outstanding.fail_all(BrokerUnavailable(f"Redis connection lost ({exc})"))
                backoff.wait(self._stopping)
                continue
            for data in _popped(response):
                self.outstanding.reply(_decode_reply(data))
        if client is not None:
            with contextlib.suppress(redis.RedisError):
                client.close()

    def close(self) -> None:
        if not self._stopping.is_set():
            self._stopping.set()
            self._outbox.put(None)


_Item = tuple[Request, str]


class RequestServer(Subscription):
    """Pops the requests of one queue as its handler threads free up, and pushes the replies."""

    def __init__(
        self,
        link: RedisLink,
        keys: Keys,
        queue_name: str,
        handler: RequestHandler,
        concurrency: int,
    ) -> None:
        self._link = link
        self._key = keys.requests(queue_name)
        self.pool: HandlerPool[_Item, ServedRequest] = request_pool(
            f"redis-{queue_name}", concurrency, handler, self
        )
        self._feeder = threading.Thread(
            target=self._feed, name=f"redis-{queue_name}-feed", daemon=True
        )

    def start(self) -> RequestServer:
        self.pool.start()
        self._feeder.start()
        return self

    def _feed(self) -> None:
        client: redis.Redis | None = None
        backoff = Backoff(cap=2.0)
        while (room := self.pool.wait_for_room()) > 0:
            try:
                if client is None:
                    client = self._link.blocking_client()
                response = client.blmpop(_BLOCK, 1, self._key, direction="LEFT", count=room)
                backoff.reset()
            except redis.RedisError as exc:
                if client is not None:
                    with contextlib.suppress(redis.RedisError):
                        client.close()
                client = None
                if self.pool.stopping.is_set():
                    break
                log.warning("taking requests from Redis failed: %s", exc)
                backoff.wait(self.pool.stopping)
                continue
            for data in _popped(response):
                try:
                    item = _decode_request(data)
                except (ValueError, IndexError) as exc:
                    log.warning("dropped a malformed request: %s", exc)
                    continue
                self.pool.put(item)
        if client is not None:
            with contextlib.suppress(redis.RedisError):
                client.close()

    # --- the transport of the handler pool ---

    def open(self, item: _Item) -> ServedRequest:
        request, reply_to = item

        def answer(body: bytes) -> None:
            data = _encode_reply(request.correlation_id, body)

            def push() -> None:
                with self._link.client.pipeline(transaction=False) as pipe:
                    pipe.rpush(reply_to, data)
                    pipe.pexpire(reply_to, _UNUSED_TTL_MS)
                    pipe.execute()

            # Within the caller's deadline only: after it, nobody reads the reply.
            self._link.call("reply", push, timeout=max(0.0, request.deadline - time.time()))

        return ServedRequest(IncomingRequest(request), answer, lambda: None)

    def retry(self, item: _Item) -> None:
        pass  # never asked: a served request is always settled

    def release(self, item: _Item) -> None:
        # Taken but not started: back to the front, for another worker.
        request, reply_to = item
        with contextlib.suppress(redis.RedisError):
            self._link.client.lpush(self._key, _encode_request(request, reply_to))

    def cancel(self, timeout: float | None = None) -> None:
        if not self.pool.stop():
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        self._feeder.join(timeout)
        # Requests not started yet were handed back by the pool; running ones still answer.
        self.pool.join(deadline)
