"""Weighted aliases on one gateway: ModelInfer (gRPC and REST) and job-style Predict through
NAME@ALIAS with routes; the share each version gets, routing keys that always land on one
version, a weight change that moves only the keys in the range that changed hands, the answers
naming the version, and SetModelAlias's refusals."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from mlgate.v1 import jobs_pb2, models_pb2
from server.routing import bucket
from tests.support.background import BackgroundGateway
from tests.support.gateway_calls import (
    README_ROW,
    diabetes_request,
    events_of,
    jobs,
    models,
    refused,
    rows,
    trained_model,
)
from tests.support.oip import matrix_request, readme_matrix
from tests.support.rest_client import RestClient, readme_infer
from tests.support.system import gateway_settings, running_gateway

NAME = "diabetes-rf"
SMALL = {"n_estimators": 10}


class Served:
    def __init__(self, gateway: BackgroundGateway, ids: list[str]) -> None:
        self.gateway, self.ids = gateway, ids

    def rest(self) -> RestClient:
        port = self.gateway.gateway.http_port
        assert port is not None
        return RestClient(port)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A gateway (REST on a free port) with three versions of diabetes-rf."""
    data: Path = tmp_path_factory.mktemp("routing") / "data"
    gateway = running_gateway(gateway_settings(data, http_port=0))
    with grpc.insecure_channel(gateway.address) as channel:
        ids = [
            trained_model(channel, diabetes_request(model_name=NAME, params=SMALL))
            for _ in range(3)
        ]
    yield Served(gateway, ids)
    gateway.stop()


@pytest.fixture
def channel(served: Served) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(served.gateway.address) as channel:
        yield channel


def _set(channel: grpc.Channel, alias: str, **fields: Any) -> models_pb2.SetModelAliasResponse:
    routes = [models_pb2.AliasRoute(version=v, weight=w) for v, w in fields.pop("routes", [])]
    request = models_pb2.SetModelAliasRequest(name=NAME, alias=alias, routes=routes, **fields)
    response: models_pb2.SetModelAliasResponse = models(channel).SetModelAlias(request)
    return response


def _infer_request(model: str, key: str = "") -> pb.ModelInferRequest:
    request = matrix_request(model, readme_matrix(), raw=True)
    if key:
        request.parameters["routing_key"].string_param = key
    return request


def _predict(channel: grpc.Channel, model: str, key: str = "") -> jobs_pb2.PredictResult:
    request = jobs_pb2.PredictRequest(model_id=model, rows=rows(README_ROW), routing_key=key)
    done = events_of(jobs(channel).Predict(request, timeout=60))[-1]
    assert done.state == jobs_pb2.JOB_STATE_SUCCEEDED, done
    return done.predict_result


def _expected(key: str, first_range: int, low: int, high: int) -> int:
    """The version a key goes to with the routes low:first_range, high:the rest."""
    return low if bucket(key) < first_range else high


def test_ten_thousand_infers_through_a_90_10_alias_put_ten_percent_on_the_second(
    served: Served, channel: grpc.Channel
) -> None:
    _set(channel, "canary", routes=[(1, 90), (2, 10)])
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    request = _infer_request(f"{NAME}@canary")
    answered: Counter[str] = Counter()
    pending: list[grpc.CallFuture[pb.ModelInferResponse]] = []
    for _ in range(10_000):
        pending.append(stub.ModelInfer.future(request, timeout=60))
        if len(pending) >= 64:  # a bounded number in flight, as a busy client would have
            answered.update(future.result().model_version for future in pending)
            pending.clear()
    answered.update(future.result().model_version for future in pending)
    assert set(answered) == {"1", "2"}, answered
    share = answered["2"] / 10_000 * 100
    assert 8.5 <= share <= 11.5, answered


def test_a_routing_key_always_lands_on_one_version_on_every_path(
    served: Served, channel: grpc.Channel
) -> None:
    _set(channel, "sticky", routes=[(1, 90), (2, 10)])
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    keys = [f"user-{i}" for i in range(60)]
    assert {_expected(key, 90, 1, 2) for key in keys} == {1, 2}, "both versions are exercised"
    with served.rest() as rest:
        for key in keys:
            want = _expected(key, 90, 1, 2)
            for _ in range(3):
                answer = stub.ModelInfer(_infer_request(f"{NAME}@sticky", key), timeout=30)
                assert (answer.model_name, answer.model_version) == (f"{NAME}@sticky", str(want))
            body = readme_infer(parameters={"routing_key": key})
            over_rest = rest.post(f"/v2/models/{NAME}/versions/sticky/infer", body)
            assert over_rest.status == 200, over_rest.body
            assert over_rest.body["model_version"] == str(want)
        for key in keys[:8]:
            want = _expected(key, 90, 1, 2)
            result = _predict(channel, f"{NAME}@sticky", key)
            assert (result.model_name, result.model_version, result.alias) == (NAME, want, "sticky")
            assert result.model_id == served.ids[want - 1]


def test_moving_weight_moves_only_the_keys_in_the_range_that_changed_hands(
    channel: grpc.Channel,
) -> None:
    _set(channel, "moving", routes=[(1, 90), (2, 10)])
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    keys = [f"account-{i}" for i in range(200)]

    def versions() -> dict[str, str]:
        return {
            key: stub.ModelInfer(_infer_request(f"{NAME}@moving", key), timeout=30).model_version
            for key in keys
        }

    before = versions()
    changed = _set(channel, "moving", routes=[(2, 20), (1, 80)])
    assert [(r.version, r.weight) for r in changed.alias.routes] == [(1, 80), (2, 20)]
    assert changed.previous_version == 1
    after = versions()  # every request after SetModelAlias returned sees the new weights
    moved = {key for key in keys if before[key] != after[key]}
    assert moved == {key for key in keys if 80 <= bucket(key) < 90}
    assert moved and all(after[key] == "2" for key in moved)


def test_a_draw_without_a_key_answers_from_each_version_named(channel: grpc.Channel) -> None:
    _set(channel, "halves", routes=[(2, 50), (3, 50)], shadow_version=1)
    seen = {_predict(channel, f"{NAME}@halves").model_version for _ in range(24)}
    assert seen == {2, 3}
    shown = models(channel).GetModel(models_pb2.GetModelRequest(model_id=f"{NAME}@halves")).model
    assert shown.version == 2, "the heaviest route, the lower version among equals"
    alias = shown.through_alias
    assert [(r.version, r.weight) for r in alias.routes] == [(2, 50), (3, 50)]
    assert (alias.alias, alias.shadow_version) == ("halves", 1)
    plain = _predict(channel, f"{NAME}/3")
    assert (plain.model_name, plain.model_version, plain.alias) == (NAME, 3, "")


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"version": 1, "routes": [(1, 50), (2, 50)]}, "routes", "not both"),
        ({}, "version", "is required"),
        ({"routes": [(1, 100)]}, "routes", "two routes or more"),
        ({"routes": [(1, 90), (2, 0)]}, "routes[1].weight", "from 1 to 100, not 0"),
        ({"routes": [(1, 90), (2, 101)]}, "routes[1].weight", "from 1 to 100"),
        ({"routes": [(1, 60), (2, 30)]}, "routes", "sum to 100, not 90"),
        ({"routes": [(1, 50), (1, 50)]}, "routes[1].version", "also routes[0]"),
        ({"routes": [(1, 50), (0, 50)]}, "routes[1].version", "version number"),
        ({"routes": [(1, 50), (9, 50)]}, "routes[1].version", "has no version 9"),
        ({"routes": [(1, 50), (2, 50)], "shadow_version": 2}, "shadow_version", "routes[1]"),
        ({"version": 1, "shadow_version": 1}, "shadow_version", "the version the alias"),
        ({"version": 1, "shadow_version": 9}, "shadow_version", "has no version 9"),
    ],
)
def test_set_model_alias_refuses_bad_routes_naming_the_field(
    channel: grpc.Channel, fields: dict[str, Any], field: str, says: str
) -> None:
    code, message = refused(lambda: _set(channel, "refused", **fields))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, message
    assert message.startswith(f"{field}: ") and says in message, message
    got = refused(
        lambda: models(channel).GetModel(models_pb2.GetModelRequest(model_id=f"{NAME}@refused"))
    )
    assert got[0] == grpc.StatusCode.NOT_FOUND, "nothing was written"


def test_a_routing_key_must_be_a_short_string(served: Served, channel: grpc.Channel) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    request = _infer_request(NAME)
    request.parameters["routing_key"].bool_param = True
    code, message = refused(lambda: stub.ModelInfer(request, timeout=30))
    assert (code, message) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "parameters.routing_key: must be a string",
    )
    long = jobs_pb2.PredictRequest(model_id=NAME, rows=rows(README_ROW), routing_key="k" * 257)
    code, message = refused(lambda: events_of(jobs(channel).Predict(long, timeout=30)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message == "routing_key: is over 256 characters"
