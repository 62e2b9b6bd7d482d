"""MLGateClient's Open Inference Protocol calls: a model's inputs, and inference on columns."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from mlgate_client.errors import from_rpc_error

if TYPE_CHECKING:
    import numpy as np

__all__ = ["InferenceCalls", "Inferred", "Tensor", "encode_bytes"]

Resp = TypeVar("Resp")


@dataclass(frozen=True)
class Tensor:
    """An input or output as ModelMetadata describes it."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Inferred:
    """One ModelInfer answer: predictions, and for classifiers probabilities and classes."""

    predictions: list[Any]
    probabilities: np.ndarray | None
    classes: list[Any]
    model_id: str
    # The version that answered, when the gateway names it; warnings about the inputs sent.
    model_version: str = ""
    warnings: tuple[str, ...] = ()


def encode_bytes(values: Sequence[str]) -> bytes:
    """Strings as raw BYTES contents: each a 4-byte little-endian length, then its UTF-8."""
    parts = []
    for value in values:
        data = value.encode()
        parts.append(len(data).to_bytes(4, "little") + data)
    return b"".join(parts)


_NUMPY = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8", "INT32": "<i4", "BOOL": "|b1"}


def _strings(raw: bytes) -> list[str]:
    out, pos = [], 0
    while pos < len(raw):
        size = int.from_bytes(raw[pos : pos + 4], "little")
        out.append(raw[pos + 4 : pos + 4 + size].decode())
        pos += 4 + size
    return out


def _output(response: pb.ModelInferResponse, i: int) -> Any:
    tensor = response.outputs[i]
    raw = response.raw_output_contents[i]
    if tensor.datatype == "BYTES":
        return _strings(raw)
    try:
        import numpy as np  # only when a reply is decoded: `mlgate gateway` never loads numpy
    except ImportError:
        raise ImportError(
            "decoding a ModelInfer reply needs numpy: pip install 'mlgate-client[scoring]'"
        ) from None
    return np.frombuffer(raw, dtype=_NUMPY[tensor.datatype]).reshape(list(tensor.shape))


def inferred(response: pb.ModelInferResponse) -> Inferred:
    """The predictions (and probabilities) of a response, as lists and arrays."""
    predictions: list[Any] = []
    probabilities = None
    classes: list[Any] = []
    for i, tensor in enumerate(response.outputs):
        if tensor.name == "predict":
            values = _output(response, i)
            predictions = values if isinstance(values, list) else values.tolist()
        elif tensor.name == "predict_proba":
            probabilities = _output(response, i)
            classes = json.loads(tensor.parameters["classes"].string_param)
    warnings = response.parameters.get("warnings")
    return Inferred(
        predictions,
        probabilities,
        classes,
        response.parameters["model_id"].string_param,
        response.model_version,
        tuple(json.loads(warnings.string_param)) if warnings is not None else (),
    )


class InferenceCalls:
    """Mixed into MLGateClient, which provides the channel, the timeout and ``_unary``."""

    if TYPE_CHECKING:
        _channel: grpc.Channel
        _timeout: float | None

        def _unary(self, method: Callable[..., Resp], request: Any) -> Resp: ...

    @property
    def _inference(self) -> pb_grpc.GRPCInferenceServiceStub:
        return pb_grpc.GRPCInferenceServiceStub(self._channel)

    def model_inputs(self, model: str) -> tuple[list[Tensor], list[Tensor]]:
        """The model's inputs (one per feature, in order) and outputs, from ModelMetadata."""
        found = self._unary(self._inference.ModelMetadata, pb.ModelMetadataRequest(name=model))
        return (
            [Tensor(t.name, t.datatype, tuple(t.shape)) for t in found.inputs],
            [Tensor(t.name, t.datatype, tuple(t.shape)) for t in found.outputs],
        )

    def infer_columns(
        self,
        model: str,
        columns: Mapping[str, tuple[str, bytes]],
        rows: int,
        first_line: int = 0,
        routing_key: str = "",
    ) -> Future[Inferred]:
        """Start ModelInfer on ``rows`` rows given as raw contents per input: name ->
        (datatype, bytes); with ``first_line``, the line of a file row 0 came from, errors name
        lines; with ``routing_key``, a weighted alias answers with the version the key maps
        to. The future's result is the answer, or the client error."""
        request = pb.ModelInferRequest(model_name=model)
        if first_line:
            request.parameters["first_line"].int64_param = first_line
        if routing_key:
            request.parameters["routing_key"].string_param = routing_key
        for name, (datatype, data) in columns.items():
            request.inputs.add(name=name, datatype=datatype, shape=[rows])
            request.raw_input_contents.append(data)
        call = self._inference.ModelInfer.future(request, timeout=self._timeout)
        result: Future[Inferred] = Future()

        def done(finished: Any) -> None:
            try:
                result.set_result(inferred(finished.result()))
            except grpc.RpcError as exc:
                result.set_exception(from_rpc_error(exc))
            except Exception as exc:
                result.set_exception(exc)

        call.add_done_callback(done)
        return result
