"""Outages of what a job depends on (the object store, the broker) wait; they are not attempts.

A job that meets ``StorageUnavailable`` or ``BrokerUnavailable`` did not fail and its worker did
not die: the store it needs is away. Leaving the delivery to the broker would redeliver it at once
and count each redelivery as an attempt, until the job was dead-lettered for "a worker that died"
in under a second. Instead the worker keeps the delivery (its broker connection lives on other
threads) and runs the job again after a backoff (0.5 s, doubling to 5 s, jittered) until it gets
past the outage, for at most ``MLGATE_OUTAGE_RETRY_SECONDS`` from the first failure, and says so
on the job (a WAITING_FOR_STORE event at each retry: "waiting for the object store (s3) for 12 s",
so the job is not left looking queued). The job's steps are safe to repeat: a training job whose
model was saved reuses it, so a job that lost only its final event to a broker outage is not
fitted again. Past the bound the job ends FAILED with UNAVAILABLE and the message the gateway
gives for the same outage (``mlgate.failures``), naming the store; what the store said goes to
the worker's log.

An outage is logged once per process when a job first meets it and once when a job next gets
past it, never per retry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from brokers._backoff import Backoff
from brokers.errors import BrokerUnavailable
from mlgate.errors import Unavailable
from mlgate.failures import Backends, public
from storage.errors import StorageUnavailable

__all__ = ["OutageOutlasted", "OutageRetry"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The errors that mean "a store is away", as opposed to a job that failed or a worker stopping.
OUTAGES = (StorageUnavailable, BrokerUnavailable)
_FIRST_DELAY = 0.5
_LONGEST_DELAY = 5.0
# How often a waiting job looks at its cancellation and at the worker stopping.
_POLL = 0.25


class OutageOutlasted(Unavailable):
    """A store stayed away for longer than the job may wait for it."""


class _Known:
    """Which stores this process has seen away, so each outage is logged once, not per job."""

    def __init__(self) -> None:
        self._since: dict[str, float] = {}
        self._lock = threading.Lock()

    def down(self, name: str, exc: BaseException, limit: float) -> None:
        with self._lock:
            if name in self._since:
                return
            self._since[name] = time.monotonic()
        log.warning(
            "%s is unreachable (%s): jobs wait for it, up to %.0f s each, without counting an "
            "attempt",
            name,
            exc,
            limit,
        )

    def up(self, name: str) -> None:
        with self._lock:
            since = self._since.pop(name, None)
        if since is not None:
            log.warning("%s is back after %.1f s", name, time.monotonic() - since)


class OutageRetry:
    """Runs jobs through outages of the object store and the broker (see the module docstring).

    ``backends`` name the stores as the gateway names them; ``stopping`` set, a waiting job gives
    up at once and its outage error goes to the caller, which hands the delivery back to the
    broker untouched (``brokers.base.HandBack``).
    """

    def __init__(self, limit: float, backends: Backends) -> None:
        self.limit = limit
        self.stopping = threading.Event()
        self._backends = backends
        self._known = _Known()

    def run(
        self,
        attempt: Callable[[], T],
        *,
        check: Callable[[], None] = lambda: None,
        where: str = "a job",
        on_wait: Callable[[str, float], None] = lambda service, waited: None,
    ) -> T:
        """``attempt()``, run again while it meets an outage; ``check`` is called while waiting
        and may raise to end the wait (a cancelled job). Raises ``OutageOutlasted`` past the
        bound, or the outage error itself once the worker is stopping; ``where`` names the job
        in the log. Before each wait, ``on_wait`` is told the service waited for (as messages
        name it) and the seconds waited so far, so the job's record can say it is waiting."""
        backoff = Backoff(base=_FIRST_DELAY, cap=_LONGEST_DELAY)
        deadline: float | None = None
        first = 0.0
        away: set[str] = set()
        while True:
            try:
                result = attempt()
            except OUTAGES as exc:
                name = self._backends.service(exc)
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.limit
                    first = now
                self._known.down(name, exc, self.limit)
                away.add(name)
                if self.stopping.is_set():
                    raise
                if now >= deadline:
                    log.warning(
                        "%s: %s stayed unreachable for %g s, longer than a job waits "
                        "(MLGATE_OUTAGE_RETRY_SECONDS): the job fails",
                        where,
                        name,
                        self.limit,
                    )
                    told = public(exc, self._backends, where)
                    raise OutageOutlasted(told.message) from exc
                on_wait(name, now - first)
                self._wait(min(deadline, now + backoff.next_delay()), check)
                if self.stopping.is_set():
                    raise
                continue
            except BaseException:
                self._back(away)  # an outcome other than an outage: the stores answered
                raise
            self._back(away)
            return result

    def _back(self, away: set[str]) -> None:
        for name in away:
            self._known.up(name)

    def _wait(self, until: float, check: Callable[[], None]) -> None:
        while (left := until - time.monotonic()) > 0:
            check()
            if self.stopping.wait(min(left, _POLL)):
                return
        check()
