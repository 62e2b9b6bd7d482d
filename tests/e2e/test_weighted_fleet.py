"""Weighted aliases across a fleet: two gateway processes on one shared job store and a worker,
on each real broker (RabbitMQ with PostgreSQL, Redis with Redis). Both paths (job-style Predict and
ModelInfer) through NAME@ALIAS draw by weight and follow routing keys the same way on both
gateways, and a change made through one gateway is what the other answers with from the next
request on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from mlgate_client import MLGateClient
from server.routing import bucket
from tests.support.cluster import Cluster
from tests.support.fleets import STORES, fleet_cluster
from tests.support.samples import DIABETES_FEATURES, DOC_ROW

NAME = "diabetes-rf"


@pytest.fixture(
    params=[("rabbitmq", "postgresql"), ("redis", "redis")],
    ids=lambda param: f"{param[0]}-broker-{param[1]}-store",
)
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    broker, store = request.param
    with fleet_cluster(tmp_path, broker, STORES[store]()) as cluster:
        yield cluster


def _infer(stub: pb_grpc.GRPCInferenceServiceStub, key: str = "") -> str:
    """The version that answered a ModelInfer of the docs' row through diabetes-rf@canary."""
    request = pb.ModelInferRequest(model_name=f"{NAME}@canary")
    row = np.array([[DOC_ROW[name] for name in DIABETES_FEATURES]], dtype="<f8")
    request.inputs.add(name="input", datatype="FP64", shape=list(row.shape))
    request.raw_input_contents.append(row.tobytes())
    if key:
        request.parameters["routing_key"].string_param = key
    answer: pb.ModelInferResponse = stub.ModelInfer(request, timeout=60)
    return answer.model_version


@pytest.mark.slow
def test_weighted_routes_on_both_paths_and_a_change_seen_by_the_other_gateway(
    fleet: Cluster,
) -> None:
    one, two = fleet.start_gateway(), fleet.start_gateway()
    fleet.start_worker()
    with (
        MLGateClient(one, timeout=60) as first,
        MLGateClient(two, timeout=60) as second,
        grpc.insecure_channel(one) as channel_one,
        grpc.insecure_channel(two) as channel_two,
    ):
        for _ in range(2):
            first.wait(
                first.submit_train(
                    "diabetes",
                    "target",
                    features=DIABETES_FEATURES,
                    params={"n_estimators": 10},
                    model_name=NAME,
                )
            )
        stubs = [pb_grpc.GRPCInferenceServiceStub(c) for c in (channel_one, channel_two)]
        first.set_alias(NAME, "canary", routes={1: 50, 2: 50})

        drawn = Counter(_infer(stubs[i % 2]) for i in range(60))
        assert set(drawn) == {"1", "2"}, drawn
        keys = [f"user-{i}" for i in range(30)]
        for key in keys:
            want = "1" if bucket(key) < 50 else "2"
            assert [_infer(stub, key) for stub in stubs] == [want, want], key
        for key in keys[:4]:
            number = 1 if bucket(key) < 50 else 2
            for client in (first, second):
                result = client.predict(f"{NAME}@canary", [DOC_ROW], routing_key=key)
                assert (result.model_name, result.model_version, result.alias) == (
                    NAME,
                    number,
                    "canary",
                )

        # Changed through the second gateway: the first answers with it from the next request.
        second.set_alias(NAME, "canary", routes={1: 1, 2: 99})
        moved = [key for key in keys if 1 <= bucket(key) < 50]
        assert moved
        assert {_infer(stubs[0], key) for key in moved} == {"2"}
        assert first.predict(f"{NAME}@canary", [DOC_ROW], routing_key=moved[0]).model_version == 2
        assert first.get_model(f"{NAME}@canary").through_alias is not None
        shown = first.get_model(f"{NAME}@canary").through_alias
        assert shown is not None and shown.routes == ((1, 1), (2, 99))
