"""The Open Inference Protocol's JSON (its REST binding) as the gRPC binding's messages, and back.

A REST inference request becomes the ``ModelInferRequest`` a gRPC client would have sent with
typed contents, so both bindings share one path from there on (``server.inference_service``);
the worker answers typed contents, which become the JSON response. Tensor ``data`` is row-major,
flat or nested as the tensor's shape nests it (the specification allows both); numbers coerce
to the tensor's datatype only where no value changes (an integer for FP64, not 1.5 for INT64),
``null`` in a floating-point tensor is a blank (NaN), and strings are ``BYTES`` elements.
Parameters are ``$string``, ``$number`` or ``$boolean``; a fractional number travels as its
JSON text, the protocol's gRPC parameters having no floating-point kind.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from google.protobuf.internal.containers import MessageMap

from mlgate.errors import InvalidField
from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.quoting import quote
from mlgate.tensors import DATATYPES

__all__ = ["infer_request", "infer_response", "metadata_response"]

_FLOATS = frozenset({"FP64", "FP32"})
# The largest dimension a shape may state (the specification's unsigned 64-bit integers,
# within what the gRPC message's int64 holds).
_MAX_DIM = 2**63 - 1


def _object(value: Any, where: str, shape: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidField(where, f"must be a JSON object: {shape}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidField(where, "must be a JSON string")
    return value


def _parameters(target: MessageMap[str, pb.InferParameter], value: Any, where: str) -> None:
    for name, item in _object(value, where, '{"name": "value", ...}').items():
        parameter = target[name]
        if isinstance(item, bool):
            parameter.bool_param = item
        elif isinstance(item, int):
            if not -(2**63) <= item < 2**63:
                raise InvalidField(f"{where}.{name}", "is beyond a 64-bit integer")
            parameter.int64_param = item
        elif isinstance(item, str):
            parameter.string_param = item
        elif isinstance(item, float):
            parameter.string_param = json.dumps(item)
        else:
            raise InvalidField(f"{where}.{name}", "must be a string, a number or a boolean")


def _flatten(values: list[Any]) -> list[Any]:
    """Row-major elements of data given nested (``[[1, 2], [3, 4]]``) or flat."""
    if not any(isinstance(value, list) for value in values):
        return values
    flat: list[Any] = []
    for value in values:
        if isinstance(value, list):
            flat.extend(_flatten(value))
        else:
            flat.append(value)
    return flat


def _shape(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(dim, int) and not isinstance(dim, bool) and 0 <= dim <= _MAX_DIM for dim in value
    ):
        raise InvalidField(where, "must be a JSON array of sizes, whole numbers ≥ 0")
    return value


def _fill(tensor: pb.ModelInferRequest.InferInputTensor, values: list[Any], where: str) -> None:
    """Put ``values`` into the typed contents field of the tensor's datatype; a datatype mlgate
    does not take stays empty, for the tensor checks to refuse by name."""
    datatype = DATATYPES.get(tensor.datatype)
    if datatype is None:
        return
    field = getattr(tensor.contents, datatype.field)
    if tensor.datatype == "BYTES":
        if not all(isinstance(value, str) for value in values):
            raise InvalidField(where, "BYTES data must be JSON strings")
        field.extend(value.encode() for value in values)
        return
    try:
        field.extend(values)  # typed, in C: no step per value here
    except (TypeError, ValueError):
        del field[:]  # what went in before the value it refused
        try:
            field.extend(_coerced(tensor.datatype, values, where))
        except ValueError as exc:
            raise InvalidField(where, f"holds a value beyond {tensor.datatype}: {exc}") from None


def _coerced(datatype: str, values: Iterable[Any], where: str) -> list[Any]:
    """The slow path, for data the fast one refused: blanks as NaN, or an error naming why."""
    kind = {"BOOL": "true or false", "INT64": "whole numbers", "INT32": "whole numbers"}.get(
        datatype, "numbers (or null for a blank)"
    )
    coerced: list[Any] = []
    for k, value in enumerate(values):
        if value is None and datatype in _FLOATS:
            coerced.append(math.nan)
        elif isinstance(value, (bool, int, float)) and not (
            datatype in ("INT64", "INT32") and isinstance(value, float)
        ):
            coerced.append(value)
        else:
            text = json.dumps(value)
            shown = text if len(text) <= 40 else text[:39] + "…"
            raise InvalidField(f"{where}[{k}]", f"{datatype} data must be {kind}, not {shown}")
    return coerced


def _input(request: pb.ModelInferRequest, i: int, value: Any) -> None:
    where = f"inputs[{i}]"
    item = _object(value, where, '{"name", "shape", "datatype", "data"}')
    missing = [key for key in ("name", "shape", "datatype", "data") if key not in item]
    if missing:
        raise InvalidField(where, f"has no {', '.join(repr(key) for key in missing)}")
    name = _text(item["name"], f"{where}.name")
    where = f"inputs[{i}] ({quote(name, 40)})"
    shape = _shape(item["shape"], f"{where}.shape")
    tensor = request.inputs.add(
        name=name, datatype=_text(item["datatype"], f"{where}.datatype"), shape=shape
    )
    if "parameters" in item:
        _parameters(tensor.parameters, item["parameters"], f"{where}.parameters")
    data = item["data"]
    if not isinstance(data, list):
        raise InvalidField(f"{where}.data", "must be a JSON array of the tensor's values")
    values = _flatten(data)
    elements = math.prod(shape)
    if len(values) != elements:
        raise InvalidField(
            f"{where}.data", f"has {len(values)} values; shape {shape} needs {elements}"
        )
    _fill(tensor, values, f"{where}.data")


def infer_request(body: bytes, model_name: str, model_version: str) -> pb.ModelInferRequest:
    """The ``ModelInferRequest`` a REST inference request's JSON body stands for, for the model
    its path names; ``InvalidField`` naming what to fix."""
    try:
        document = json.loads(body)
    except ValueError as exc:  # UnicodeDecodeError is one
        raise InvalidField("request body", f"is not JSON: {exc}") from None
    document = _object(document, "request body", '{"inputs": [...]}')
    request = pb.ModelInferRequest(model_name=model_name, model_version=model_version)
    if document.get("id") is not None:
        request.id = _text(document["id"], "id")
    if "parameters" in document:
        _parameters(request.parameters, document["parameters"], "parameters")
    inputs = document.get("inputs")
    if not isinstance(inputs, list):
        raise InvalidField("inputs", "must be a JSON array of tensors (ModelMetadata lists them)")
    for i, value in enumerate(inputs):
        _input(request, i, value)
    outputs = document.get("outputs") or []
    if not isinstance(outputs, list):
        raise InvalidField("outputs", 'must be a JSON array: [{"name": "predict"}, ...]')
    for i, value in enumerate(outputs):
        output = _object(value, f"outputs[{i}]", '{"name": "predict"}')
        added = request.outputs.add(name=_text(output.get("name"), f"outputs[{i}].name"))
        if "parameters" in output:
            _parameters(added.parameters, output["parameters"], f"outputs[{i}].parameters")
    return request


def _plain(parameters: MessageMap[str, pb.InferParameter]) -> dict[str, Any]:
    return {name: getattr(p, p.WhichOneof("parameter_choice") or "string_param")
            for name, p in parameters.items()}  # fmt: skip


def infer_response(data: bytes) -> dict[str, Any]:
    """A serialized ``ModelInferResponse`` with typed contents (what the worker answers a
    request with typed contents) as the REST binding's JSON object."""
    response = pb.ModelInferResponse.FromString(data)
    outputs = []
    for output in response.outputs:
        values: list[Any] = list(getattr(output.contents, DATATYPES[output.datatype].field))
        if output.datatype == "BYTES":
            values = [value.decode(errors="replace") for value in values]
        tensor: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": list(output.shape),
            "data": values,
        }
        if output.parameters:
            tensor["parameters"] = _plain(output.parameters)
        outputs.append(tensor)
    answer: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version:
        answer["model_version"] = response.model_version
    answer["id"] = response.id
    if response.parameters:
        answer["parameters"] = _plain(response.parameters)
    answer["outputs"] = outputs
    return answer


def metadata_response(metadata: pb.ModelMetadataResponse) -> dict[str, Any]:
    """``ModelMetadata``'s answer as the REST binding's ``$metadata_model_response``."""

    def tensors(
        found: Iterable[pb.ModelMetadataResponse.TensorMetadata],
    ) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in found]

    return {
        "name": metadata.name,
        "versions": list(metadata.versions),
        "platform": metadata.platform,
        "inputs": tensors(metadata.inputs),
        "outputs": tensors(metadata.outputs),
    }
