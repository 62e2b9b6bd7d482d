"""Fixtures for online inference: a gateway serving the seed forest, and a stub."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mlgate.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.support.background import BackgroundGateway
from tests.support.gateway_calls import diabetes_request, trained_model
from tests.support.system import gateway_settings, running_gateway


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BackgroundGateway, str]]:
    """An embedded gateway (batches may wait up to 50 ms, so batching shows) and the README's
    forest trained on it, named diabetes-rf."""
    data: Path = tmp_path_factory.mktemp("inference") / "data"
    gateway = running_gateway(gateway_settings(data, batch_max_delay_us=50_000))
    with grpc.insecure_channel(gateway.address) as channel:
        model_id = trained_model(channel, diabetes_request(model_name="diabetes-rf"))
    yield gateway, model_id
    gateway.stop()


@pytest.fixture
def stub(served: tuple[BackgroundGateway, str]) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(served[0].address) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture
def model_id(served: tuple[BackgroundGateway, str]) -> str:
    return served[1]
