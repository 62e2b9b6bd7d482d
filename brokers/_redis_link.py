"""The Redis broker's connection to Redis: pools, error translation, retries, Lua scripts.

Every driver error is translated here, at the boundary: connection loss, timeouts, a server still
loading its data or a read-only replica become ``BrokerUnavailable``; anything else from Redis is a
``BrokerError``. Callers retry only what this module says is retryable.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from brokers._backoff import Backoff
from brokers._redis_keys import RELEASED_CONSUMER, Keys
from brokers.errors import BrokerClosed, BrokerError, BrokerUnavailable
from mlgate.metrics import BROKER_RECONNECTS
from mlgate.redis_client import redis_client
from mlgate.urls import redact_url

__all__ = [
    "UNAVAILABLE",
    "Entry",
    "RedisLink",
    "RedisOptions",
    "is_missing_group",
    "stream_entries",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Driver errors that mean "Redis cannot be reached right now": retry with backoff.
UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.ConnectionError,  # includes BusyLoadingError: restarted, still reading its AOF
    redis.TimeoutError,
    redis.ReadOnlyError,  # a replica, e.g. mid-failover
)

#: The longest a blocking read waits before its loop looks around (stop, reclaim scan).
MAX_BLOCK = 5.0
#: How often the health monitor pings Redis: ``healthy()`` is at most this stale.
HEALTH_INTERVAL = 1.0


@dataclass(frozen=True)
class RedisOptions:
    """Thresholds and retention of the Redis broker; the defaults suit production."""

    #: A consumer whose heartbeat is older than this is dead: its entries are reclaimed.
    heartbeat_ttl: float = 15.0
    #: How often each consumer looks for entries of dead or stopped consumers.
    reclaim_interval: float = 5.0
    #: Events older than this are trimmed, consumed or not (the wait for a gateway).
    event_retention: float = 24 * 3600.0
    #: At most about this many events are kept, however young.
    event_max_len: int = 100_000
    #: Dead letters older than this are dropped.
    dead_letter_retention: float = 14 * 24 * 3600.0
    #: At most about this many dead letters per queue are kept.
    dead_letter_max_len: int = 10_000
    #: How long ``ack``/``dead_letter`` keep retrying while Redis is unreachable.
    settle_timeout: float = 60.0
    #: CA file trusted for a ``rediss://`` URL; None: the system's trust store.
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if self.reclaim_interval <= 0 or self.heartbeat_ttl <= 0:
            raise ValueError("heartbeat_ttl and reclaim_interval must be positive")


@dataclass(frozen=True)
class Entry:
    """One stream entry as a consumer received it."""

    id: bytes
    fields: dict[bytes, bytes]
    attempt: int


def stream_entries(response: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The (id, fields) pairs of an XREAD/XREADGROUP/XCLAIM reply, skipping deleted entries."""
    if not response:
        return []
    if isinstance(response, dict):
        batches = list(response.values())
    elif (
        isinstance(response[0], list | tuple)
        and len(response[0]) == 2
        and isinstance(response[0][1], list)
    ):
        batches = [batch for _stream, batch in response]
    else:
        batches = [response]
    out: list[tuple[bytes, dict[bytes, bytes]]] = []
    for batch in batches:
        for item in batch:
            entry_id, fields = item[0], item[1]
            if entry_id is not None and fields:
                out.append((entry_id, fields))
    return out


def is_missing_group(exc: redis.ResponseError) -> bool:
    """The stream or its group is gone (Redis lost its data): the group must be created again."""
    text = str(exc)
    return text.startswith("NOGROUP") or "no longer exists" in text


# Claims every entry pending on a consumer whose heartbeat is gone, atomically, so two reclaimers
# never both take one entry and no lock is needed. XCLAIM counts the delivery, so the attempt is
# the previous delivery count plus one; an entry handed back (owned by the released consumer) keeps
# its count (RETRYCOUNT): it comes again as the attempt it was. KEYS: stream, owner's heartbeat.
# ARGV: group, owner, claimer, count, the released consumer's name.
_CLAIM = """
if redis.call('EXISTS', KEYS[2]) == 1 then return {} end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', tonumber(ARGV[4]), ARGV[2])
local handed_back = ARGV[2] == ARGV[5]
local out = {}
for _, p in ipairs(pending) do
  local got
  local attempt = p[4] + 1
  if handed_back then
    got = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, p[1], 'RETRYCOUNT', p[4])
    attempt = p[4]
  else
    got = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, p[1])
  end
  local entry = got[1]
  if type(entry) == 'table' and type(entry[2]) == 'table' then
    out[#out + 1] = {entry[1], attempt, entry[2]}
  end
end
return out
"""

# Deletes a consumer that has no heartbeat and nothing pending (DELCONSUMER would drop pending
# entries, hence the check in the same script). KEYS: stream, heartbeat. ARGV: group, consumer.
_FORGET = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
"""

# Moves an entry to the dead-letter stream only if this call acknowledged it, so a retried call
# cannot dead-letter it twice. KEYS: stream, dead stream. ARGV: group, id, max len, min id,
# ttl ms, then the dead letter's field/value pairs.
_DEAD_LETTER = """
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 1 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 6))
  redis.call('XTRIM', KEYS[2], 'MINID', ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
redis.call('XDEL', KEYS[1], ARGV[2])
return acked
"""


class RedisLink:
    """A long-lived connection pool to one Redis server, shared by a broker's threads."""

    def __init__(self, url: str, keys: Keys, options: RedisOptions) -> None:
        self.url = url
        self.keys = keys
        self.options = options
        self.closed = threading.Event()
        # Longer outages than the client's retries ride out are the callers' business, with
        # their deadlines.
        self.client = redis_client(url, ca_file=options.ca_file)
        self._claim = self.client.register_script(_CLAIM)
        self._forget = self.client.register_script(_FORGET)
        self._dead_letter = self.client.register_script(_DEAD_LETTER)
        #: Whether Redis answered lately; read by ``healthy()`` without a round trip.
        self.reachable = False
        self._monitor: threading.Thread | None = None
        self._monitor_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RedisLink({redact_url(self.url)!r}, namespace={self.keys.namespace!r})"

    def where(self) -> str:
        return redact_url(self.url)

    def blocking_client(self) -> redis.Redis:
        """A dedicated connection for blocking reads (one per subscription, for its life)."""
        return redis_client(
            self.url, ca_file=self.options.ca_file, timeout=MAX_BLOCK + 10.0, dedicated=True
        )

    def start_monitor(self) -> None:
        """Keep ``reachable`` current from a thread of its own (one PING per interval)."""
        with self._monitor_lock:
            if self._monitor is None:
                self._monitor = threading.Thread(
                    target=self._monitor_loop, name="redis-health", daemon=True
                )
                self._monitor.start()

    def _monitor_loop(self) -> None:
        conn: redis.Redis | None = None
        lost = False
        while not self.closed.is_set():
            try:
                if conn is None:
                    conn = redis_client(
                        self.url,
                        ca_file=self.options.ca_file,
                        timeout=HEALTH_INTERVAL,
                        connect_timeout=HEALTH_INTERVAL,
                        dedicated=True,
                    )
                answered = bool(conn.ping())
                if answered and lost:
                    BROKER_RECONNECTS.inc()  # back after an outage this loop saw
                lost = not answered
                self.reachable = answered
            except redis.RedisError:
                lost = True
                self.reachable = False
                if conn is not None:
                    with contextlib.suppress(redis.RedisError):
                        conn.close()
                conn = None
            self.closed.wait(HEALTH_INTERVAL)
        if conn is not None:
            with contextlib.suppress(redis.RedisError):
                conn.close()

    def close(self) -> None:
        self.closed.set()
        self.client.close()
        self.client.connection_pool.disconnect()

    def check_open(self) -> None:
        if self.closed.is_set():
            raise BrokerClosed("the broker is closed")

    def call(self, what: str, fn: Callable[[], T], *, timeout: float) -> T:
        """``fn()``, retried with backoff while Redis is unreachable, for up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        backoff = Backoff()
        while True:
            self.check_open()
            try:
                result = fn()
                self.reachable = True
                return result
            except UNAVAILABLE as exc:
                self.reachable = False
                if time.monotonic() >= deadline:
                    raise BrokerUnavailable(
                        f"{what}: Redis at {self.where()} is unavailable ({exc})"
                    ) from exc
                backoff.wait(self.closed, deadline=deadline)
            except redis.RedisError as exc:
                raise BrokerError(f"{what}: Redis at {self.where()} refused it ({exc})") from exc

    def ensure_group(self, stream: str, group: str) -> None:
        """Create the stream's group if missing, from the start of the stream so nothing
        already in it is skipped (after Redis lost its data, the stream is recreated by XADD)."""
        try:
            self.client.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def recently_restarted(self) -> bool:
        """Whether Redis started less than a heartbeat TTL ago. Heartbeat keys may then be
        missing for consumers that are alive and have not renewed yet, so nothing is reclaimed."""
        uptime = int(self.client.info("server").get("uptime_in_seconds", 0))
        return uptime < self.options.heartbeat_ttl

    def claim(self, stream: str, group: str, owner: str, claimer: str, count: int) -> list[Entry]:
        """Take up to ``count`` entries pending on ``owner`` if its heartbeat is gone."""
        rows = self._claim(
            keys=[stream, self.keys.heartbeat(stream, owner)],
            args=[group, owner, claimer, count, RELEASED_CONSUMER],
        )
        entries = []
        for entry_id, attempt, flat in rows or []:
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            entries.append(Entry(entry_id, fields, int(attempt)))
        return entries

    def forget(self, stream: str, group: str, consumer: str) -> bool:
        """Delete ``consumer`` from the group if it has no heartbeat and nothing pending."""
        keys = [stream, self.keys.heartbeat(stream, consumer)]
        return bool(self._forget(keys=keys, args=[group, consumer]))

    def dead_letter(
        self, stream: str, group: str, entry_id: bytes, dead: str, fields: dict[str, bytes | str]
    ) -> None:
        options = self.options
        cutoff_ms = int((time.time() - options.dead_letter_retention) * 1000)
        args: list[bytes | str | int] = [
            group,
            entry_id,
            options.dead_letter_max_len,
            f"{max(cutoff_ms, 0)}-0",
            int(options.dead_letter_retention * 1000),
        ]
        for name, value in fields.items():
            args += [name, value]
        self._dead_letter(keys=[stream, dead], args=args)
