"""Cross-request batching: ModelInfer calls for one model that arrive close together travel to
the workers as one broker request and are evaluated together.

Each model has a lane. While fewer than ``max_in_flight`` batches of its lane are out, a call
goes out at the end of the event loop's current turn, with the calls that arrived in the same
turn (a lone request waits for nothing else); otherwise it waits for the next batch, which leaves
as soon as a reply frees the lane, when it holds ``max_rows`` rows, or ``max_delay`` after its
first call arrived, whichever comes first. So batches grow with the load, as Triton's dynamic
batcher's do, and each caller waits at most ``max_delay`` for others.

The requests' bytes held at once, waiting or out, are bounded (``max_bytes``,
``MLGATE_INFER_MAX_BYTES_IN_FLIGHT``): when workers fall behind, a call past the bound is refused
RESOURCE_EXHAUSTED at once rather than queued, so the gateway's memory stays bounded whatever the
load. A call's bytes count from its submission until its batch is answered or expires.

A batch's reply holds one outcome per call, in order: each caller gets exactly its own. A batch
that no reply answers before the last of its callers' deadlines fails them DEADLINE_EXCEEDED; one
whose worker died (the broker handed it to another worker, which refuses to run it blind) is sent
once more if there is time left. Everything here runs on the gateway's event loop; replies arrive
on broker threads and are handed over with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from dataclasses import dataclass, field

from brokers.base import INFERENCE_QUEUE, Broker, Reply, Request, Requester
from brokers.errors import BrokerError
from mlgate import tracing
from mlgate.errors import DeadlineExceeded, Internal, MLGateError, ResourceExhausted, from_status
from mlgate.v1 import inference_pb2
from server.infer_limits import size_text

__all__ = ["Batcher", "LaneKey", "error_of"]

#: (model id, artifact digest, version reported): requests batch together only on all three.
LaneKey = tuple[str, str, str]
Outcome = inference_pb2.InferenceOutcome

_NO_WORKER = (
    "no worker answered within {timeout:.3g}s: are workers running? (`mlgate status` shows "
    "them); a longer deadline, or more workers, may help"
)


@dataclass
class _Call:
    data: bytes
    rows: int
    deadline: float
    future: asyncio.Future[Outcome]


@dataclass
class _Lane:
    key: LaneKey
    waiting: list[_Call] = field(default_factory=list)
    rows: int = 0
    in_flight: int = 0
    timer: asyncio.TimerHandle | None = None
    #: A flush at the end of this turn of the loop is scheduled.
    soon: bool = False


@dataclass
class _Batch:
    lane: _Lane
    calls: list[_Call]
    body: bytes
    deadline: float
    sent: float
    attempt: int
    headers: tuple[tuple[str, str], ...]
    timer: asyncio.TimerHandle | None = None


class Batcher:
    """Collects calls into batches per model and sends them through the broker."""

    def __init__(
        self,
        broker: Broker,
        loop: asyncio.AbstractEventLoop,
        *,
        max_rows: int,
        max_delay: float,
        max_bytes: int,
        max_in_flight: int = 2,
    ) -> None:
        self._loop = loop
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        #: Bytes of the calls submitted and not yet answered (waiting or out).
        self.bytes_held = 0
        self._max_delay = max_delay
        self._max_in_flight = max_in_flight
        self._lanes: dict[LaneKey, _Lane] = {}
        self._batches: dict[str, _Batch] = {}
        self._ids = itertools.count()
        self._prefix = f"{os.getpid():x}-{time.monotonic_ns():x}-"
        self._requester: Requester = broker.requester(self._on_reply)
        #: Batches sent, and the rows they held (for tests and the bench: batching is observable).
        self.batches_sent = 0

    def close(self) -> None:
        self._requester.close()

    # --- the callers' side ---

    def submit(
        self, key: LaneKey, data: bytes, rows: int, deadline: float
    ) -> asyncio.Future[Outcome]:
        """Queue one serialized ModelInferRequest of ``rows`` rows; its outcome, when it comes.
        Raises ResourceExhausted when its bytes would pass the bound on what is held."""
        if self.bytes_held + len(data) > self._max_bytes:
            raise ResourceExhausted(
                f"the gateway holds {size_text(self.bytes_held)} of ModelInfer requests for its "
                f"workers, and this one ({size_text(len(data))}) would pass its limit of "
                f"{size_text(self._max_bytes)} (MLGATE_INFER_MAX_BYTES_IN_FLIGHT): the workers "
                "are behind; retry shortly, or ask the operator for more workers"
            )
        self.bytes_held += len(data)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(key)
        call = _Call(data, rows, deadline, self._loop.create_future())
        lane.waiting.append(call)
        lane.rows += rows
        self._schedule(lane)
        return call.future

    def _schedule(self, lane: _Lane) -> None:
        if not lane.waiting or lane.soon:
            return
        if lane.in_flight < self._max_in_flight or lane.rows >= self._max_rows:
            # Not now: calls whose handlers run in this same turn of the loop join the batch.
            lane.soon = True
            self._loop.call_soon(self._flush, lane)
        elif lane.timer is None:
            lane.timer = self._loop.call_later(self._max_delay, self._flush, lane)

    def _flush(self, lane: _Lane) -> None:
        lane.soon = False
        if lane.timer is not None:
            lane.timer.cancel()
            lane.timer = None
        calls: list[_Call] = []
        rows = 0
        while lane.waiting and (not calls or rows + lane.waiting[0].rows <= self._max_rows):
            call = lane.waiting.pop(0)
            rows += call.rows
            if not call.future.done():  # its caller may have gone (cancelled)
                calls.append(call)
            else:
                self.bytes_held -= len(call.data)
        lane.rows -= rows
        if calls:
            model_id, sha256, version = lane.key
            batch = inference_pb2.InferenceBatch(
                model_id=model_id,
                model_sha256=sha256,
                model_version=version,
                requests=[call.data for call in calls],
            )
            with tracing.span("inference batch", model_id=model_id, requests=len(calls), rows=rows):
                headers = tracing.inject()
            self._send(
                _Batch(
                    lane,
                    calls,
                    batch.SerializeToString(),
                    max(call.deadline for call in calls),
                    time.time(),
                    1,
                    headers,
                )
            )
        self._schedule(lane)

    def _send(self, batch: _Batch) -> None:
        correlation_id = f"{self._prefix}{next(self._ids):x}"
        batch.lane.in_flight += 1
        self._batches[correlation_id] = batch
        batch.timer = self._loop.call_at(
            self._loop.time() + max(0.0, batch.deadline - time.time()),
            self._expire,
            correlation_id,
        )
        self.batches_sent += 1
        try:
            self._requester.send(
                INFERENCE_QUEUE, Request(correlation_id, batch.body, batch.deadline, batch.headers)
            )
        except BrokerError as exc:
            self._finish(correlation_id, exc)

    # --- replies ---

    def _on_reply(self, reply: Reply) -> None:
        # A broker thread: hand over to the loop. A loop already closed has no callers left.
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._resolve, reply)

    def _resolve(self, reply: Reply) -> None:
        if reply.error is not None:
            self._finish(reply.correlation_id, reply.error)
            return
        try:
            answer = inference_pb2.InferenceReply.FromString(reply.body)
        except Exception:
            self._finish(reply.correlation_id, Internal("a worker sent a reply that is not one"))
            return
        batch = self._batches.get(reply.correlation_id)
        if (
            batch is not None
            and answer.worker_lost
            and batch.attempt == 1
            and batch.deadline > time.time()
        ):
            self._finish(reply.correlation_id, None)
            batch.attempt = 2
            self._send(batch)
            return
        self._finish(reply.correlation_id, answer)

    def _expire(self, correlation_id: str) -> None:
        batch = self._batches.get(correlation_id)
        if batch is not None:
            waited = time.time() - batch.sent
            self._finish(correlation_id, DeadlineExceeded(_NO_WORKER.format(timeout=waited)))

    def _finish(
        self,
        correlation_id: str,
        result: inference_pb2.InferenceReply | BaseException | None,
    ) -> None:
        """Retire a batch; give its callers ``result`` (None: the batch goes again)."""
        batch = self._batches.pop(correlation_id, None)
        if batch is None:
            return  # answered already, or expired
        if batch.timer is not None:
            batch.timer.cancel()
        batch.lane.in_flight -= 1
        if result is None:
            self._schedule(batch.lane)
            return  # sent again: its calls' bytes are still held
        self.bytes_held -= sum(len(call.data) for call in batch.calls)
        if isinstance(result, inference_pb2.InferenceReply):
            outcomes = list(result.outcomes)
            if len(outcomes) != len(batch.calls):
                result = Internal(
                    f"a worker answered {len(outcomes)} of a batch's {len(batch.calls)} requests"
                )
            else:
                for call, outcome in zip(batch.calls, outcomes, strict=True):
                    if not call.future.done():
                        call.future.set_result(outcome)
        if isinstance(result, BaseException):
            for call in batch.calls:
                if not call.future.done():
                    call.future.set_exception(result)
        self._schedule(batch.lane)


def error_of(outcome: Outcome) -> MLGateError | None:
    """The error a worker's outcome reports, or None when it carries a response."""
    return from_status(outcome.code, outcome.message) if outcome.code else None
