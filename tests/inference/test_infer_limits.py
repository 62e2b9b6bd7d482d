"""ModelInfer is bounded: rows and bytes per request (as sent, and as the tensors decode), and the
bytes a gateway holds for its workers at once; each refusal is RESOURCE_EXHAUSTED naming the limit
and the variable that raises it. (The probe sent 1,000,000 rows, and 8 such requests at once took
a gateway to 2 GB.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from server.settings import GatewaySettings
from tests.support.background import BackgroundGateway
from tests.support.gateway_calls import diabetes_request, refused, trained_model
from tests.support.oip import FEATURES, fp64_output, matrix_request
from tests.support.system import gateway_settings, running_gateway
from tests.support.waiting import wait_for

MiB = 2**20
LIMITS = {
    "infer_max_rows": 20_000,
    "infer_max_bytes": MiB,
    "infer_max_bytes_in_flight": 2 * MiB,
}
_ADVICE = "send fewer rows per request, or ask its operator to raise the limit"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BackgroundGateway, str]]:
    """A gateway with small limits, and the README's forest trained on it (in place of the
    conftest's, so its ``stub`` calls this gateway)."""
    data: Path = tmp_path_factory.mktemp("limits") / "data"
    gateway = running_gateway(gateway_settings(data, **LIMITS))
    with grpc.insecure_channel(gateway.address) as channel:
        model_id = trained_model(channel, diabetes_request())
    yield gateway, model_id
    gateway.stop()


def _fp32(model_id: str, rows: int) -> pb.ModelInferRequest:
    """``rows`` rows as one raw FP32 tensor [N, F]: 36 bytes a row (9 features)."""
    request = pb.ModelInferRequest(model_name=model_id)
    request.inputs.add(name="input", datatype="FP32", shape=[rows, len(FEATURES)])
    request.raw_input_contents.append(np.zeros((rows, len(FEATURES)), "<f4").tobytes())
    return request


def test_defaults_and_the_variables_that_change_them() -> None:
    defaults = GatewaySettings.from_env({})
    assert (
        defaults.infer_max_rows,
        defaults.infer_max_bytes,
        defaults.infer_max_bytes_in_flight,
    ) == (100_000, 64 * MiB, 256 * MiB)
    # gRPC receives a request a little over the bound, so that its refusal names the variable.
    assert defaults.max_message_bytes == 65 * MiB
    chosen = GatewaySettings.from_env(
        {
            "MLGATE_INFER_MAX_ROWS": "500",
            "MLGATE_INFER_MAX_BYTES": "128MiB",
            "MLGATE_INFER_MAX_BYTES_IN_FLIGHT": "1GiB",
        }
    )
    assert (chosen.infer_max_rows, chosen.infer_max_bytes) == (500, 128 * MiB)
    assert chosen.infer_max_bytes_in_flight == 1024 * MiB
    assert chosen.max_message_bytes == 129 * MiB
    with pytest.raises(ValueError, match=r"^MLGATE_INFER_MAX_BYTES_IN_FLIGHT .* must be at least"):
        GatewaySettings.from_env(
            {"MLGATE_INFER_MAX_BYTES": "64MiB", "MLGATE_INFER_MAX_BYTES_IN_FLIGHT": "32MiB"}
        )
    with pytest.raises(ValueError, match=r"^MLGATE_INFER_MAX_ROWS must be a whole number"):
        GatewaySettings.from_env({"MLGATE_INFER_MAX_ROWS": "0"})


def test_rows_up_to_the_limit_are_answered_and_more_refused(stub, served) -> None:
    model_id = served[1]
    response = stub.ModelInfer(_fp32(model_id, 20_000), timeout=60)
    assert fp64_output(response).shape == (20_000,)
    code, details = refused(lambda: stub.ModelInfer(_fp32(model_id, 20_001), timeout=60))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details == (
        "inputs[0] ('input') has 20,001 rows, over this gateway's limit of 20,000 rows per "
        f"ModelInfer request (MLGATE_INFER_MAX_ROWS); {_ADVICE}"
    )


def test_the_probes_million_rows_are_refused_from_the_shape_alone(stub, served) -> None:
    # The shape claims 1,000,000 rows; nothing is decoded to find out they are not there.
    request = pb.ModelInferRequest(model_name=served[1])
    request.inputs.add(name="input", datatype="FP64", shape=[1_000_000, len(FEATURES)])
    request.raw_input_contents.append(b"")
    code, details = refused(lambda: stub.ModelInfer(request, timeout=60))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details.startswith("inputs[0] ('input') has 1,000,000 rows, over this gateway's limit")


def test_a_request_over_the_byte_limit_is_refused_as_sent(stub, served) -> None:
    X = np.zeros((16_000, len(FEATURES)))  # 1.15 MB of FP64
    code, details = refused(
        lambda: stub.ModelInfer(matrix_request(served[1], X, raw=True), timeout=60)
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details == (
        "the request is 1.1 MiB, over this gateway's limit of 1.0 MiB per ModelInfer request "
        f"(MLGATE_INFER_MAX_BYTES); {_ADVICE}"
    )


def test_tensors_that_decode_past_the_byte_limit_are_refused(stub, served) -> None:
    # 144,000 INT64 zeros travel as one byte each and decode to eight.
    request = pb.ModelInferRequest(model_name=served[1])
    tensor = request.inputs.add(name="input", datatype="INT64", shape=[16_000, len(FEATURES)])
    tensor.contents.int64_contents.extend([0] * 16_000 * len(FEATURES))
    assert request.ByteSize() < MiB
    code, details = refused(lambda: stub.ModelInfer(request, timeout=60))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details == (
        "its tensors decode to 1.1 MiB (shape times datatype size), over this gateway's limit "
        f"of 1.0 MiB per ModelInfer request (MLGATE_INFER_MAX_BYTES); {_ADVICE}"
    )


def test_a_gateway_whose_workers_are_behind_holds_a_bounded_amount(served, tmp_path: Path) -> None:
    """A second gateway on the same models, with no worker: what it holds grows to its bound,
    then requests are refused at once; once held requests end, new ones are taken again."""
    models = served[0].settings.storage_url
    settings = gateway_settings(tmp_path / "data", storage_url=models, **LIMITS)
    stalled = running_gateway(settings, embedded_workers=False)
    batcher = stalled.gateway.batcher
    assert batcher is not None
    request = _fp32(served[1], 20_000)  # 703 KiB: two fit in 2 MiB, three do not
    size = request.ByteSize()
    try:
        with grpc.insecure_channel(stalled.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            held = [stub.ModelInfer.future(request, timeout=5) for _ in range(2)]
            wait_for(lambda: batcher.bytes_held == 2 * size, 10, "two requests held")
            code, details = refused(lambda: stub.ModelInfer(request, timeout=10))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert details == (
                "the gateway holds 1.4 MiB of ModelInfer requests for its workers, and this one "
                "(703 KiB) would pass its limit of 2.0 MiB (MLGATE_INFER_MAX_BYTES_IN_FLIGHT): "
                "the workers are behind; retry shortly, or ask the operator for more workers"
            )
            for future in held:
                with pytest.raises(grpc.RpcError) as ended:
                    future.result()
                assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            wait_for(lambda: batcher.bytes_held == 0, 10, "the held requests released")
            code, _ = refused(lambda: stub.ModelInfer(request, timeout=1))
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED  # taken, and no worker answers
    finally:
        stalled.stop()
