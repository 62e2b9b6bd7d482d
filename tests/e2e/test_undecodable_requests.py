"""Bytes that do not decode as a method's request are INVALID_ARGUMENT naming the message, on every
kind of RPC (unary, server-streaming, client-streaming, bidirectional: the probe found UNKNOWN on
the first and INTERNAL with a traceback on the streaming ones), and nothing is logged as an
error."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
import pytest

from mlgate.v1 import datasets_pb2

_GARBAGE = b"\xff\xff\xff\xff"  # field 31 with wire type 7: no such wire type


def _as_is(data: bytes) -> bytes:
    return data


def _call(channel: grpc.Channel, kind: str, method: str) -> Callable[[bytes], object]:
    """A call of ``method`` that sends bytes as they are and waits for its end."""
    make = getattr(channel, kind)
    stub = make(method, request_serializer=_as_is, response_deserializer=_as_is)
    if kind == "unary_unary":
        return lambda data: stub(data, timeout=10)
    if kind == "unary_stream":
        return lambda data: list(stub(data, timeout=10))
    if kind == "stream_unary":
        return lambda data: stub(iter([data]), timeout=10)
    return lambda data: list(stub(iter([data]), timeout=10))


@pytest.mark.parametrize(
    ("kind", "method", "message"),
    [
        ("unary_unary", "/mlgate.v1.JobService/GetJob", "mlgate.v1.GetJobRequest"),
        (
            "unary_unary",
            "/inference.GRPCInferenceService/ModelInfer",
            "inference.ModelInferRequest",
        ),
        ("unary_unary", "/grpc.health.v1.Health/Check", "grpc.health.v1.HealthCheckRequest"),
        ("unary_stream", "/mlgate.v1.JobService/WatchJob", "mlgate.v1.WatchJobRequest"),
        ("unary_stream", "/mlgate.v1.ModelService/ExportModel", "mlgate.v1.ExportModelRequest"),
        (
            "stream_unary",
            "/mlgate.v1.DatasetService/UploadDataset",
            "mlgate.v1.UploadDatasetRequest",
        ),
        (
            "stream_stream",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            "grpc.reflection.v1alpha.ServerReflectionRequest",
        ),
    ],
)
def test_undecodable_bytes_are_invalid_argument_naming_the_message(
    channel: grpc.Channel,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    method: str,
    message: str,
) -> None:
    caplog.set_level(logging.INFO)
    with pytest.raises(grpc.RpcError) as caught:
        _call(channel, kind, method)(_GARBAGE)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert (caught.value.details() or "").startswith(
        f"request: the bytes received do not decode as {message} ("
    ), caught.value.details()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


def test_a_binary_upload_is_invalid_argument_saying_so(channel: grpc.Channel) -> None:
    upload = _call(channel, "stream_unary", "/mlgate.v1.DatasetService/UploadDataset")
    request = datasets_pb2.UploadDatasetRequest(
        dataset_id="binary", chunk=b"\x7fELF\x02\x01\x01\x00\x00\x00,;|\t\n" * 64
    )
    with pytest.raises(grpc.RpcError) as caught:
        upload(request.SerializeToString())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "chunk: line 1 holds a NUL byte: this is binary data, not CSV"
