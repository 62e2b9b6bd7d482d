"""The workers' side of online inference: a batch of requests in, one evaluation, replies out.

A batch holds requests for one model that a gateway collected (``server.batching``). Each is
decoded into arrays (``workers.tensors``), its blanks filled for an imputed model
(``workers.imputation``); those that fail get their own error, the rest are evaluated together,
once (``workers.evaluation``), and each gets exactly its own rows back in a complete
``ModelInferResponse``, with the warnings about its inputs a prediction job would get, that the
gateway passes on as it is. Models come from the same cache as prediction jobs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import numpy as np
from google.protobuf.message import DecodeError

from brokers.base import IncomingRequest
from mlgate import tracing
from mlgate.failures import Backends, public
from mlgate.metrics import INFERENCE_BATCH_ROWS
from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.tensors import DATATYPES, PREDICT, PREDICT_PROBA, WARNINGS, class_labels, outputs_of
from mlgate.v1 import inference_pb2, models_pb2
from workers.cache import ModelCache
from workers.evaluation import evaluate
from workers.imputation import fill
from workers.prediction import input_warnings
from workers.tensors import Inputs, concatenate, decode, raw_contents, typed_contents

__all__ = ["InferenceServer", "respond"]

log = logging.getLogger(__name__)

_LOST = (
    "the worker evaluating this request stopped before answering (nothing was evaluated twice); "
    "send it again"
)


def _rows(inputs: Inputs) -> int:
    if isinstance(inputs, np.ndarray):
        return int(inputs.shape[0])
    return len(next(iter(inputs.values())))


def respond(
    request: pb.ModelInferRequest,
    record: models_pb2.Model,
    version: str,
    predicted: np.ndarray,
    proba: np.ndarray | None,
    warnings: Sequence[str] = (),
) -> pb.ModelInferResponse:
    """The response to ``request`` from its rows' predictions: raw contents if it sent raw
    contents, typed otherwise; only the outputs it asked for (all when it named none); the
    warnings about its inputs as the ``warnings`` parameter, a JSON list."""
    response = pb.ModelInferResponse(
        model_name=request.model_name, model_version=version, id=request.id
    )
    response.parameters["model_id"].string_param = record.id
    if warnings:
        response.parameters[WARNINGS].string_param = json.dumps(list(warnings))
    wanted = {output.name for output in request.outputs}
    raw = bool(request.raw_input_contents)
    for name, datatype, _shape in outputs_of(record):
        values = predicted if name == PREDICT else proba
        if values is None or (wanted and name not in wanted):
            continue
        tensor = response.outputs.add(name=name, datatype=datatype, shape=list(values.shape))
        if name == PREDICT_PROBA:
            classes = class_labels(record.classes)
            tensor.parameters["classes"].string_param = json.dumps(classes)
        if raw:
            response.raw_output_contents.append(raw_contents(values, datatype))
        else:
            field = getattr(tensor.contents, DATATYPES[datatype].field)
            field.extend(typed_contents(values, datatype))
    return response


class InferenceServer:
    """Answers inference batches from a model cache; ``handle`` is a broker request handler.
    A request that fails is told as the gateway would tell its error (``mlgate.failures``, naming
    ``backends``), and the gateway passes that on unchanged."""

    def __init__(self, cache: ModelCache, backends: Backends) -> None:
        self._cache = cache
        self._backends = backends

    def _failed(self, exc: Exception, model_id: str) -> inference_pb2.InferenceOutcome:
        failure = public(exc, self._backends, f"inference on model {model_id}")
        return inference_pb2.InferenceOutcome(code=failure.code, message=failure.message)

    def handle(self, incoming: IncomingRequest) -> bytes:
        try:
            batch = inference_pb2.InferenceBatch.FromString(incoming.request.body)
        except DecodeError:
            log.warning("dropped a request that is not an inference batch")
            return inference_pb2.InferenceReply().SerializeToString()
        if incoming.redelivered:
            # Another worker took it and died: maybe because of it. The gateway decides whether
            # one more try fits in its deadline; a batch that kills every worker is not retried.
            lost = inference_pb2.InferenceOutcome(code="UNAVAILABLE", message=_LOST)
            reply = inference_pb2.InferenceReply(
                outcomes=[lost] * len(batch.requests), worker_lost=True
            )
            return reply.SerializeToString()
        parent = tracing.extract(incoming.request.headers)
        with tracing.span(
            "inference batch", parent=parent, model_id=batch.model_id, requests=len(batch.requests)
        ):
            return self.answer(batch).SerializeToString()

    def answer(self, batch: inference_pb2.InferenceBatch) -> inference_pb2.InferenceReply:
        """Each request's outcome, in order."""
        outcomes: list[inference_pb2.InferenceOutcome | None] = [None] * len(batch.requests)
        try:
            record, model = self._cache.get(batch.model_id, batch.model_sha256)
        except Exception as exc:
            failed = self._failed(exc, batch.model_id)
            return inference_pb2.InferenceReply(outcomes=[failed] * len(batch.requests))
        ready: list[tuple[int, pb.ModelInferRequest, Inputs]] = []
        warned: dict[int, list[str]] = {}
        for k, data in enumerate(batch.requests):
            try:
                request = pb.ModelInferRequest.FromString(data)
                inputs = fill(decode(request, record), record)
                sent = [tensor.name for tensor in request.inputs]
                if len(request.inputs) == 1 and len(request.inputs[0].shape) == 2:
                    sent = [f.name for f in record.features]  # [N, F]: named by position
                warned[k] = input_warnings(model, record, sent, inputs)
                ready.append((k, request, inputs))
            except Exception as exc:
                outcomes[k] = self._failed(exc, batch.model_id)
        if ready:
            try:
                inputs = concatenate([inputs for _k, _request, inputs in ready])
                rows = _rows(inputs)
                INFERENCE_BATCH_ROWS.observe(rows)
                with tracing.span("evaluate", rows=rows):
                    predicted, proba = evaluate(model, record, inputs)
                start = 0
                for k, request, own in ready:
                    end = start + _rows(own)
                    response = respond(
                        request,
                        record,
                        batch.model_version,
                        predicted[start:end],
                        None if proba is None else proba[start:end],
                        warned[k],
                    )
                    outcomes[k] = inference_pb2.InferenceOutcome(
                        response=response.SerializeToString()
                    )
                    start = end
            except Exception as exc:
                failed = self._failed(exc, batch.model_id)
                for k, _request, _inputs in ready:
                    outcomes[k] = failed
        return inference_pb2.InferenceReply(outcomes=[o for o in outcomes if o is not None])
