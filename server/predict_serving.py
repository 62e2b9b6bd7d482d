"""Job-style Predict's serving hooks: its per-version metrics and its shadow.

A Predict is a job: its answer is the SUCCEEDED event its stream delivers. ``followed`` wraps that
stream: when the job ends it counts the request in the per-version metrics (``path="predict"``,
latency from the request's arrival at the gateway to the end event, queueing and the worker's time
included; a client that leaves first is counted CANCELLED at the moment it left), and, for an alias
with a shadow version, hands the request to the shadow once the primary's result is in hand.

The shadow is not sent a job: the Predict's rows are mirrored through the inference path
(``server.shadow``) as a ModelInferRequest with one tensor per feature, its first
``ROWS_COMPARED`` rows only (those the comparison reads). The request is queued for its shadow
when the primary's result arrives, just before that event goes to the client; its rows are
converted and sent from the shadow's queue on a later turn of the event loop. So a shadow adds
no job record, no queue entry and no event; and mirroring needs a result to compare with, so a
Predict that fails is not mirrored.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

from google.protobuf import struct_pb2

from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.v1 import jobs_pb2, models_pb2
from server import serving_metrics
from server.routing import Routed
from server.serving_metrics import PREDICT
from server.shadow import Mirror
from server.shadow_stats import ROWS_COMPARED, Value

__all__ = ["followed", "infer_request_of", "plain"]

_ENDS = {
    jobs_pb2.JOB_STATE_SUCCEEDED,
    jobs_pb2.JOB_STATE_FAILED,
    jobs_pb2.JOB_STATE_CANCELLED,
}


def plain(value: struct_pb2.Value) -> Value:
    """A prediction as a plain value (numbers as floats)."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "number_value":
        return value.number_value
    return math.nan


def _cell(value: struct_pb2.Value | None, dtype: str) -> float | bytes:
    kind = value.WhichOneof("kind") if value is not None else None
    if dtype in ("numeric", "integer"):
        if kind == "number_value":
            return value.number_value  # type: ignore[union-attr]
        return math.nan  # a blank (the gateway already refused other kinds)
    if kind == "bool_value":
        return b"true" if value.bool_value else b"false"  # type: ignore[union-attr]
    if kind == "string_value":
        return value.string_value.encode()  # type: ignore[union-attr]
    if kind == "number_value":
        return repr(value.number_value).encode()  # type: ignore[union-attr]
    return b""


def infer_request_of(
    predict: jobs_pb2.PredictRequest, record: models_pb2.Model, limit: int = ROWS_COMPARED
) -> bytes:
    """The Predict's first ``limit`` rows (those compared) as a serialized ModelInferRequest: one
    tensor ``[N]`` per feature, FP64 for numbers (NaN a blank), BYTES for the rest ("" a blank;
    booleans as text). Converted in Python on the gateway's loop, so never more rows than that."""
    request = pb.ModelInferRequest(model_name=record.name or record.id)
    columns = {column.name: column for column in predict.columns}
    for feature in record.features:
        numbers = feature.dtype in ("numeric", "integer")
        tensor = request.inputs.add(name=feature.name, datatype="FP64" if numbers else "BYTES")
        values: Sequence[float | bytes | int | bool | str]
        if predict.columns:
            column = columns.get(feature.name)
            if column is None:
                continue  # left out: blank in every row, as on every path
            kind = column.WhichOneof("values") or "doubles"
            values = list(getattr(column, kind).values[:limit])
            if not numbers:
                values = [_text(v) for v in values]
        else:
            values = [
                _cell(row.fields.get(feature.name), feature.dtype) for row in predict.rows[:limit]
            ]
        tensor.shape.append(len(values))
        if numbers:
            tensor.contents.fp64_contents.extend(float(v) for v in values)
        else:
            tensor.contents.bytes_contents.extend(values)  # type: ignore[arg-type]
    # A feature left out of the columns is not sent at all (ModelInfer's rule is the same).
    kept = [tensor for tensor in request.inputs if tensor.shape]
    del request.inputs[:]
    request.inputs.extend(kept)
    return request.SerializeToString()


def _text(value: object) -> bytes:
    if isinstance(value, bool):
        return b"true" if value else b"false"
    return value.encode() if isinstance(value, str) else repr(value).encode()


async def followed(
    events: AsyncIterator[jobs_pb2.JobEvent],
    routed: Routed,
    request: jobs_pb2.PredictRequest,
    record: models_pb2.Model,
    mirror: Mirror | None,
    started: float,
) -> AsyncGenerator[jobs_pb2.JobEvent, None]:
    """``events`` as they come, counted (and mirrored) when the job ends; ``started`` is the
    ``time.perf_counter()`` of the request's arrival."""
    code = "CANCELLED"
    ended = False
    try:
        async for seen in events:
            if seen.state in _ENDS:
                ended = True
                code = _code(seen)
                seconds = time.perf_counter() - started
                serving_metrics.observe(
                    routed.name, routed.version, routed.alias, PREDICT, seconds, code
                )
                if mirror is not None and routed.shadow_model_id and code == "OK":
                    # Queued before the event is yielded (a client that has its answer may
                    # close the stream at once); the rows are converted and sent later.
                    kept = seen.predict_result.predictions[:ROWS_COMPARED]
                    predictions = [plain(v) for v in kept]
                    mirror.offer(
                        routed,
                        record,
                        functools.partial(infer_request_of, request, record),
                        predictions,
                        seconds,
                        size=request.ByteSize(),
                    )
            yield seen
            if ended:
                break
    finally:
        closing = getattr(events, "aclose", None)
        if closing is not None:
            await closing()
        if not ended:
            seconds = time.perf_counter() - started
            serving_metrics.observe(
                routed.name, routed.version, routed.alias, PREDICT, seconds, code
            )


def _code(event: jobs_pb2.JobEvent) -> str:
    if event.state == jobs_pb2.JOB_STATE_SUCCEEDED:
        return "OK"
    if event.state == jobs_pb2.JOB_STATE_CANCELLED:
        return "CANCELLED"
    return event.error.code or "UNKNOWN"
