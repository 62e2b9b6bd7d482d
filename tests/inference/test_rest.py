"""The Open Inference Protocol's REST binding (MLGATE_HTTP_PORT), through the standard library's
HTTP client: the same answers as gRPC's ModelInfer, to the last bit, through the same batcher;
versions reported and listed; the protocol's JSON, errors and status codes; HTTP/1.1 as clients
use it (keep-alive, pipelining, Expect: 100-continue)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY

from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from mlgate.v1 import datasets_pb2, jobs_pb2, models_pb2
from tests.support.background import BackgroundGateway
from tests.support.gateway_calls import datasets, diabetes_request, models, trained_model
from tests.support.oip import FEATURES, fp64_output, matrix_request, readme_matrix, seed_forest
from tests.support.rest_client import RestClient, readme_infer
from tests.support.system import gateway_settings, running_gateway

README_PREDICTION = 208.6445780005619
MAX_BYTES = 2**20


class Served:
    def __init__(self, gateway: BackgroundGateway, v1: str, v2: str, flowers: str) -> None:
        self.gateway, self.v1, self.v2, self.flowers = gateway, v1, v2, flowers

    @property
    def port(self) -> int:
        port = self.gateway.gateway.http_port
        assert port is not None
        return port

    def client(self) -> RestClient:
        return RestClient(self.port)


_FLOWERS = b"colour,petals,kind\n" + b"".join(
    b"%s,%d,%s\n" % (colour, petals, kind)
    for colour, petals, kind in [(b"red", 5, b"rose"), (b"white", 3, b"lily")] * 20
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A gateway with REST on a free port (batches may wait up to 50 ms, so batching shows;
    requests up to 1 MiB), the README's forest as diabetes-rf/1, a deeper one as diabetes-rf/2,
    and a classifier of strings."""
    data: Path = tmp_path_factory.mktemp("rest") / "data"
    settings = gateway_settings(
        data, http_port=0, batch_max_delay_us=50_000, infer_max_bytes=MAX_BYTES
    )
    gateway = running_gateway(settings)
    with grpc.insecure_channel(gateway.address) as channel:
        v1 = trained_model(channel, diabetes_request(model_name="diabetes-rf"))
        v2 = trained_model(
            channel, diabetes_request(model_name="diabetes-rf", params={"max_depth": 6})
        )
        models(channel).SetModelAlias(
            models_pb2.SetModelAliasRequest(name="diabetes-rf", alias="production", version=1)
        )
        datasets(channel).UploadDataset(
            iter([datasets_pb2.UploadDatasetRequest(dataset_id="flowers", chunk=_FLOWERS)])
        )
        flowers = trained_model(
            channel, jobs_pb2.TrainRequest(dataset_id="flowers", target="kind", model_name="kinds")
        )
    yield Served(gateway, v1, v2, flowers)
    gateway.stop()


def test_health_and_server_metadata(served: Served) -> None:
    with served.client() as client:
        assert (client.get("/v2/health/live").status, client.get("/v2/health/live").body) == (
            200,
            {"live": True},
        )
        ready = client.get("/v2/health/ready")
        assert (ready.status, ready.body) == (200, {"ready": True})
        server = client.get("/v2")
        assert server.status == 200 and server.body["name"] == "mlgate"
        assert server.headers["content-type"] == "application/json"


def test_the_readme_patient_over_rest_equals_grpc_and_scikit_learn(served: Served) -> None:
    """The README's prediction to the last digit, nested or flat data, as gRPC answers it."""
    with grpc.insecure_channel(served.gateway.address) as channel:
        grpc_answer = fp64_output(
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
                matrix_request("diabetes-rf/1", readme_matrix(), raw=False), timeout=30
            )
        )
    with served.client() as client:
        for nested in (True, False):
            answer = client.post(
                "/v2/models/diabetes-rf/versions/1/infer",
                readme_infer(nested=nested, id="patient-1"),
            )
            assert answer.status == 200, answer.body
            assert answer.body == {
                "model_name": "diabetes-rf",
                "model_version": "1",
                "id": "patient-1",
                "parameters": {"model_id": served.v1},
                "outputs": [
                    {
                        "name": "predict",
                        "datatype": "FP64",
                        "shape": [1],
                        "data": [README_PREDICTION],
                    }
                ],
            }
    assert (
        answer.body["outputs"][0]["data"][0]
        == grpc_answer[0]
        == seed_forest().predict(readme_matrix())[0]
    )


def test_every_response_names_the_version_that_answered(served: Served) -> None:
    """By name (the latest), alias, version or id, over gRPC and REST: the version, never empty."""
    asked = {
        ("diabetes-rf", ""): "2",
        ("diabetes-rf", "production"): "1",
        ("diabetes-rf@production", ""): "1",
        ("diabetes-rf", "2"): "2",
        (served.v1, ""): "1",
        (served.v2, ""): "2",
    }
    with grpc.insecure_channel(served.gateway.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for (name, version), answered in asked.items():
            request = matrix_request(name, readme_matrix(), raw=True)
            request.model_version = version
            response = stub.ModelInfer(request, timeout=30)
            assert (response.model_name, response.model_version) == (name, answered)
    with served.client() as client:
        for (name, version), answered in asked.items():
            path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
            answer = client.post(path, readme_infer())
            assert answer.status == 200, answer.body
            assert answer.body["model_version"] == answered, path
        named = client.post(f"/v2/models/{served.flowers}/infer", _flower_request())
        assert named.body["model_version"] == "1"  # kinds/1


def test_metadata_lists_every_version_and_models_are_ready(served: Served) -> None:
    with grpc.insecure_channel(served.gateway.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for request in (
            pb.ModelMetadataRequest(name="diabetes-rf"),
            pb.ModelMetadataRequest(name="diabetes-rf", version="1"),
            pb.ModelMetadataRequest(name=served.v1),
        ):
            assert list(stub.ModelMetadata(request, timeout=30).versions) == ["1", "2"]
    with served.client() as client:
        for path in ("/v2/models/diabetes-rf", "/v2/models/diabetes-rf/versions/production"):
            metadata = client.get(path)
            assert metadata.status == 200, metadata.body
            assert metadata.body["versions"] == ["1", "2"]
            assert metadata.body["platform"] == "mlgate_sklearn"
            assert [i["name"] for i in metadata.body["inputs"]] == FEATURES
            assert metadata.body["outputs"] == [
                {"name": "predict", "datatype": "FP64", "shape": [-1]}
            ]
        ready = client.get("/v2/models/diabetes-rf/versions/2/ready")
        assert (ready.status, ready.body) == (200, {"name": "diabetes-rf", "ready": True})
        unknown = client.get("/v2/models/diabetes-rf/versions/9/ready")
        assert unknown.status == 404 and "has no version 9" in unknown.body["error"]


def _flower_request(**fields: object) -> dict[str, object]:
    return {
        "inputs": [
            {"name": "petals", "datatype": "INT64", "shape": [2], "data": [3, 5]},
            {"name": "colour", "datatype": "BYTES", "shape": [2], "data": ["white", "red"]},
        ],
        **fields,
    }


def test_strings_per_feature_tensors_and_the_outputs_asked_for(served: Served) -> None:
    with served.client() as client:
        metadata = client.get("/v2/models/kinds").body
        assert [(i["name"], i["datatype"]) for i in metadata["inputs"]] == [
            ("colour", "BYTES"),
            ("petals", "INT64"),
        ]
        both = client.post("/v2/models/kinds/infer", _flower_request())
        assert both.status == 200, both.body
        predict, proba = both.body["outputs"]
        assert predict == {
            "name": "predict",
            "datatype": "BYTES",
            "shape": [2],
            "data": ["lily", "rose"],
        }
        assert (proba["name"], proba["datatype"], proba["shape"]) == (
            "predict_proba",
            "FP64",
            [2, 2],
        )
        assert json.loads(proba["parameters"]["classes"]) == ["lily", "rose"]
        assert np.argmax(np.reshape(proba["data"], (2, 2)), axis=1).tolist() == [0, 1]
        one = client.post(
            "/v2/models/kinds/infer", _flower_request(outputs=[{"name": "predict_proba"}])
        )
        assert [o["name"] for o in one.body["outputs"]] == ["predict_proba"]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "request body: is not JSON"),
        (b"[1, 2]", 400, "request body: must be a JSON object"),
        ({"inputs": "x"}, 400, "inputs: must be a JSON array"),
        (
            {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 9]}]},
            400,
            "has no 'data'",
        ),
        (
            readme_infer(nested=False)
            | {
                "inputs": [
                    {"name": "input", "datatype": "FP64", "shape": [1, 9], "data": [1.0] * 8}
                ]
            },
            400,
            "inputs[0] ('input').data: has 8 values; shape [1, 9] needs 9",
        ),
        (
            {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 9], "data": ["a"] * 9}]},
            400,
            "inputs[0] ('input').data[0]: FP64 data must be numbers",
        ),
        (
            {
                "inputs": [
                    {"name": "input", "datatype": "INT64", "shape": [1, 9], "data": [1.5] * 9}
                ]
            },
            400,
            "INT64 data must be whole numbers, not 1.5",
        ),
        (
            {"inputs": [{"name": "input", "datatype": "UINT8", "shape": [1, 9], "data": [1] * 9}]},
            400,
            "datatype 'UINT8' is not accepted here",
        ),
        (
            {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 8], "data": [1.0] * 8}]},
            400,
            "has 8 columns; the model has 9 features",
        ),
        (readme_infer(outputs=[{"name": "nope"}]), 400, "is not an output of this model"),
        (readme_infer(parameters={"x": None}), 400, "parameters.x: must be a string, a number"),
        # Over the bound as sent (1.4 MB of JSON), and as its tensors decode (540 KB of JSON).
        (
            {
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "FP64",
                        "shape": [30_000, 9],
                        "data": [0.0] * 270_000,
                    }
                ]
            },
            413,
            "the request is 1.3 MiB",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "FP64",
                        "shape": [20_000, 9],
                        "data": [0] * 180_000,
                    }
                ]
            },
            413,
            "its tensors decode to 1.4 MiB",
        ),
    ],
)
def test_bad_requests_are_told_what_to_fix_with_the_right_status(
    served: Served, body: object, status: int, says: str
) -> None:
    with served.client() as client:
        answer = client.post("/v2/models/diabetes-rf/infer", body)
    assert answer.status == status, answer.body
    assert set(answer.body) == {"error"} and says in answer.body["error"], answer.body


def test_unknown_models_routes_and_methods(served: Served) -> None:
    with served.client() as client:
        unknown = client.post("/v2/models/nope/infer", readme_infer())
        assert unknown.status == 404 and unknown.body == {"error": "no model is named 'nope'"}
        assert client.get(f"/v2/models/mdl_{'0' * 32}").status == 404
        route = client.get("/v1/models/diabetes-rf")
        assert route.status == 404 and "POST /v2/models/{name}" in route.body["error"]
        method = client.get("/v2/models/diabetes-rf/infer")
        assert (method.status, method.headers["allow"]) == (405, "POST")
        bad_name = client.get("/v2/models/Not%20A%20Name")
        assert bad_name.status == 400 and "is not a model reference" in bad_name.body["error"]
        binary = client.connection
        binary.request(
            "POST",
            "/v2/models/diabetes-rf/infer",
            b"{}",
            {"Inference-Header-Content-Length": "2"},
        )
        refused = binary.getresponse()
        assert refused.status == 400 and b"binary tensor data" in refused.read()


def _answered(code: str) -> float:
    return REGISTRY.get_sample_value("mlgate_inference_requests_total", {"code": code}) or 0.0


def test_rest_shares_grpcs_batcher_and_counters(served: Served) -> None:
    """Concurrent REST and gRPC calls travel in shared batches, each caller getting exactly its
    own rows; every REST inference is counted as a gRPC one is, by status."""
    batcher = served.gateway.gateway.batcher
    assert batcher is not None
    rng = np.random.default_rng(5)
    inputs = [rng.normal(0.0, 0.05, (1 + i % 4, len(FEATURES))) for i in range(24)]
    ok, not_found = _answered("OK"), _answered("NOT_FOUND")
    before = batcher.batches_sent
    barrier = threading.Barrier(len(inputs) + 2)

    def rest(X: np.ndarray) -> list[float]:
        body = {"inputs": [{"name": "input", "datatype": "FP64", "shape": list(X.shape),
                            "data": X.tolist()}]}  # fmt: skip
        with served.client() as client:
            barrier.wait()
            answer = client.post(f"/v2/models/{served.v1}/infer", body)
        assert answer.status == 200, answer.body
        return list(answer.body["outputs"][0]["data"])

    def over_grpc(X: np.ndarray) -> list[float]:
        with grpc.insecure_channel(served.gateway.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            barrier.wait()
            response = stub.ModelInfer(matrix_request(served.v1, X, raw=True), timeout=60)
        return list(fp64_output(response))

    big = [rng.normal(0.0, 0.05, (5_000, len(FEATURES))) for _ in range(2)]
    with ThreadPoolExecutor(len(inputs) + 2) as pool:
        # Two large gRPC calls hold the lane's two batches while the small ones arrive together.
        large = [pool.submit(over_grpc, X) for X in big]
        small = [pool.submit(rest, X) for X in inputs]
        for X, future in zip(big + inputs, large + small, strict=True):
            assert future.result() == seed_forest().predict(X).tolist()
    assert batcher.batches_sent - before < len(inputs), "REST calls were not batched"
    with served.client() as client:
        assert client.post("/v2/models/nope/infer", readme_infer()).status == 404
    assert (_answered("OK") - ok, _answered("NOT_FOUND") - not_found) == (len(inputs) + 2, 1)
