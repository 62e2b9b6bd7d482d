"""Shadow traffic: a request answered through an alias that names a shadow version is sent to that
version as well, once the primary's answer is ready, and the two answers are compared
(``server.shadow_stats``).

The primary never waits for its shadow. ``Mirror.offer`` only appends to a bounded queue and
returns; the queue is worked ``delay`` later (``MLGATE_SHADOW_DELAY_MS``, default 20 ms) by at
most ``concurrency`` mirrored requests at once, each sent through the same batcher
(``server.batching``) and so the same broker request/reply path ModelInfer takes to the workers.
The requests that waited together are submitted in one turn of the loop, so the batcher sends
them as one batch: one broker round trip and one vectorized evaluation for many mirrored
requests, instead of a second trip behind every primary that would compete with the next one. When the queue already holds ``max_waiting``
requests or ``max_bytes`` of them (request and primary answer counted), the request is dropped and
counted in ``mlgate_shadow_dropped_total``: under load the shadow loses requests, the primary
loses nothing, and memory stays bounded. A shadow request whose bytes would pass the batcher's
own bound is dropped too, so shadows never take a primary's place there.

Bounds (read once when the gateway starts): ``MLGATE_SHADOW_QUEUE`` requests waiting (default
256), ``MLGATE_SHADOW_CONCURRENCY`` mirrored requests out at once (default 64),
``MLGATE_SHADOW_MAX_BYTES`` bytes held (default 32 MiB), and each shadow request's deadline,
the gateway's inference timeout. A shadow's latency is timed from its submission, not from its
wait in the queue.

The gateway's servicers share one ``Mirror`` through their model catalog (``attach`` and
``mirror_of``): ModelInfer makes it, job-style Predict and GetShadowComparison find it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from mlgate.errors import FailedPrecondition, MLGateError, ResourceExhausted
from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.refs import ModelRef, check_alias, check_model_name
from mlgate.tensors import check_request
from mlgate.v1 import models_pb2
from server import serving_metrics
from server.batching import Batcher, error_of
from server.decoding import decoded
from server.model_catalog import ModelCatalog
from server.routing import Routed
from server.shadow_stats import Comparison, Comparisons, Value, forget_series, predictions_of

__all__ = [
    "Mirror",
    "attach",
    "comparison_response",
    "forget_alias",
    "forget_version",
    "mirror_of",
    "mirrors",
    "task_of",
]

log = logging.getLogger(__name__)

_DEFAULTS = {
    "MLGATE_SHADOW_QUEUE": 256,
    "MLGATE_SHADOW_CONCURRENCY": 64,
    "MLGATE_SHADOW_DELAY_MS": 20,
    "MLGATE_SHADOW_MAX_BYTES": 32 * 2**20,
}


def _bound(environ: Mapping[str, str], variable: str, least: int = 1) -> int:
    text = environ.get(variable, "")
    try:
        value = int(text) if text else _DEFAULTS[variable]
    except ValueError:
        value = least - 1
    if value < least:
        raise ValueError(f"{variable}={text!r}: give a whole number of at least {least}")
    return value


def task_of(record: models_pb2.Model) -> str:
    """How a model's answers are compared: classes agree or disagree, numbers differ."""
    return "classification" if record.classes else "regression"


@dataclass
class _Mirrored:
    comparison: Comparison
    shadow_model_id: str
    #: The serialized ModelInferRequest, or what makes it (a Predict's rows, converted late).
    data: bytes | Callable[[], bytes]
    #: The primary's answer: a serialized ModelInferResponse, or its predictions (Predict).
    primary: bytes | Sequence[Value]
    primary_seconds: float
    #: Bytes held for it (the request's, and the primary answer's).
    size: int


class Mirror:
    """The bounded queue of requests on their way to shadows, and their comparisons."""

    def __init__(
        self,
        batcher: Batcher,
        models: ModelCatalog,
        *,
        timeout: float,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self._batcher = batcher
        self._models = models
        self._timeout = timeout
        self.max_waiting = _bound(environ, "MLGATE_SHADOW_QUEUE")
        self.concurrency = _bound(environ, "MLGATE_SHADOW_CONCURRENCY")
        self.max_bytes = _bound(environ, "MLGATE_SHADOW_MAX_BYTES")
        self.delay = _bound(environ, "MLGATE_SHADOW_DELAY_MS", least=0) / 1000
        self.comparisons = Comparisons()
        self._waiting: deque[_Mirrored] = deque()
        self._running: set[asyncio.Task[None]] = set()
        #: Bytes of the requests waiting or out (for the bound, and for tests).
        self.bytes_held = 0
        self._scheduled = False

    def offer(
        self,
        routed: Routed,
        record: models_pb2.Model,
        data: bytes | Callable[[], bytes],
        primary: bytes | Sequence[Value],
        primary_seconds: float,
        *,
        size: int = 0,
    ) -> None:
        """Mirror one request answered by ``routed`` (whose alias names a shadow): queued, or
        dropped and counted when the queue is full. Returns at once. ``data`` is the request's
        bytes, or a function that makes them (then ``size`` says how large they are)."""
        comparison = self.comparisons.of(
            routed.name, routed.alias, routed.shadow_version, task_of(record)
        )
        held = len(data) if isinstance(data, bytes) else size
        held += len(primary) if isinstance(primary, bytes) else 16 * len(primary)
        item = _Mirrored(comparison, routed.shadow_model_id, data, primary, primary_seconds, held)
        if len(self._waiting) >= self.max_waiting or self.bytes_held + item.size > self.max_bytes:
            comparison.drop()
            return
        self.bytes_held += item.size
        self._waiting.append(item)
        self._schedule()

    def _schedule(self) -> None:
        if self._waiting and not self._scheduled:
            # Later, never now: the primary's handler returns its answer first, and the requests
            # that arrive meanwhile go with this one.
            self._scheduled = True
            asyncio.get_running_loop().call_later(self.delay, self._pump)

    def _pump(self) -> None:
        self._scheduled = False
        while self._waiting and len(self._running) < self.concurrency:
            task = asyncio.get_running_loop().create_task(self._send(self._waiting.popleft()))
            self._running.add(task)
            task.add_done_callback(self._sent)
        if len(self._running) >= self.concurrency:
            return  # the next pump follows the first of these to finish
        self._schedule()

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("a shadow request failed in the gateway: %s", task.exception())
        self._schedule()

    async def _send(self, item: _Mirrored) -> None:
        try:
            await self._mirror(item)
        finally:
            self.bytes_held -= item.size

    async def _mirror(self, item: _Mirrored) -> None:
        comparison = item.comparison
        started = time.perf_counter()
        try:
            record = await self._models.manifest(item.shadow_model_id)
            data = item.data if isinstance(item.data, bytes) else item.data()
            rows = check_request(decoded(pb.ModelInferRequest, data), record)
            key = (record.id, record.sha256, str(comparison.shadow_version))
            future = self._batcher.submit(key, data, rows, time.time() + self._timeout)
        except ResourceExhausted:
            comparison.drop()  # the batcher is full: primaries come first
            return
        except MLGateError as exc:
            comparison.mirror()
            comparison.failed()
            log.debug("shadow %s refused a request: %s", item.shadow_model_id, exc)
            return
        comparison.mirror()
        try:
            outcome = await future
        except MLGateError as exc:
            comparison.failed()
            log.debug("shadow %s failed: %s", item.shadow_model_id, exc)
            return
        shadow_seconds = time.perf_counter() - started
        error = error_of(outcome)
        if error is not None:
            comparison.failed()
            log.debug("shadow %s answered %s", item.shadow_model_id, error)
            return
        primary = predictions_of(item.primary) if isinstance(item.primary, bytes) else item.primary
        shadow = predictions_of(outcome.response)
        if primary is None or shadow is None:
            return  # the request asked for probabilities only: nothing to pair
        comparison.compare(primary, shadow, item.primary_seconds, shadow_seconds)

    @property
    def waiting(self) -> int:
        """Requests queued for their shadows, not yet sent."""
        return len(self._waiting)

    async def drain(self) -> None:
        """Wait for every mirrored request queued or out (tests, the bench)."""
        while self._waiting or self._running or self._scheduled:
            if self._running:
                await asyncio.wait(set(self._running))
            else:
                await asyncio.sleep(self.delay / 2)


_mirrors: weakref.WeakKeyDictionary[ModelCatalog, Mirror] = weakref.WeakKeyDictionary()


def attach(models: ModelCatalog, mirror: Mirror) -> None:
    """Make ``mirror`` the one the servicers sharing ``models`` find."""
    _mirrors[models] = mirror


def mirrors() -> list[Mirror]:
    """Every gateway's mirror in this process (tests look inside)."""
    return list(_mirrors.values())


def mirror_of(models: ModelCatalog) -> Mirror | None:
    """The gateway's mirror (None before its inference service is made)."""
    return _mirrors.get(models)


def forget_version(
    models: ModelCatalog, name: str, version: int, aliases: Sequence[str] = ()
) -> None:
    """A deleted version's series go: its serving metrics, its figures as a shadow, and those of
    the ``aliases`` deleted with it."""
    serving_metrics.forget_version(name, version)
    if not name:
        return
    for alias in aliases:
        forget_alias(models, name, alias)
    mirror = mirror_of(models)
    if mirror is not None:
        mirror.comparisons.forget_version(name, version)
    else:
        forget_series(name, version)


def forget_alias(models: ModelCatalog, name: str, alias: str) -> None:
    """A deleted alias's series go, and this gateway's figures of its shadow."""
    serving_metrics.forget_alias(name, alias)
    mirror = mirror_of(models)
    if mirror is not None:
        mirror.comparisons.forget_alias(name, alias)


async def comparison_response(
    models: ModelCatalog, name: str, alias: str
) -> models_pb2.GetShadowComparisonResponse:
    """GetShadowComparison: ``name@alias``'s shadow as this gateway has seen it since it started
    (zeros before its first mirrored request). NOT_FOUND for no such alias, FAILED_PRECONDITION
    for an alias without a shadow version."""
    check_model_name(name, "name")
    check_alias(alias)
    routed = await models.route_ref(ModelRef(name=name, alias=alias))
    if not routed.shadow_version:
        raise FailedPrecondition(
            f"{name}@{alias} has no shadow version: give it one with SetModelAlias's "
            "shadow_version (docs/rollouts.md, Shadow traffic)"
        )
    mirror = mirror_of(models)
    found = mirror.comparisons.get(name, alias) if mirror is not None else None
    if found is None or found.shadow_version != routed.shadow_version:
        found = Comparison(name, alias, routed.shadow_version)
    return found.summary()
