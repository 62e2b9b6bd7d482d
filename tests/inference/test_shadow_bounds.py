"""The shadow queue's bounds, watched from inside one gateway (embedded broker and workers): a
flood of ModelInfer calls through an alias with a slow shadow never holds more than the queue's
bounds, drops and counts the rest, and every caller gets the primary's answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from mlgate.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from mlgate.v1 import models_pb2
from server.shadow import Mirror, mirrors
from tests.support.background import BackgroundGateway
from tests.support.gateway_calls import diabetes_request, models, trained_model
from tests.support.oip import fp64_output, matrix_request, readme_matrix
from tests.support.system import gateway_settings, running_gateway


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BackgroundGateway]:
    monkeypatch.setenv("MLGATE_SHADOW_QUEUE", "4")
    monkeypatch.setenv("MLGATE_SHADOW_CONCURRENCY", "2")
    monkeypatch.setenv("MLGATE_SHADOW_MAX_BYTES", "4096")
    running = running_gateway(gateway_settings(tmp_path / "data"))
    yield running
    running.stop()


def _mirror() -> Mirror:
    (found,) = [m for m in mirrors() if m.max_waiting == 4]
    return found


def test_a_flood_holds_no_more_than_the_bounds_and_answers_every_caller_from_the_primary(
    gateway: BackgroundGateway,
) -> None:
    name = "bounded"
    with grpc.insecure_channel(gateway.address) as channel:
        trained_model(channel, diabetes_request(model_name=name, params={"n_estimators": 10}))
        # A shadow slower than its primary: the queue fills under the flood.
        trained_model(channel, diabetes_request(model_name=name, params={"n_estimators": 400}))
        models(channel).SetModelAlias(
            models_pb2.SetModelAliasRequest(name=name, alias="prod", version=1, shadow_version=2)
        )
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        X = np.repeat(readme_matrix(), 20, axis=0)
        expected = fp64_output(stub.ModelInfer(matrix_request(f"{name}/1", X, raw=True)))
        mirror = _mirror()
        seen: list[tuple[int, int]] = []
        wrong: list[str] = []
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                seen.append((mirror.waiting, mirror.bytes_held))
                done.wait(0.001)

        def client() -> None:
            for _ in range(40):
                response = stub.ModelInfer(matrix_request(f"{name}@prod", X, raw=True), timeout=60)
                if response.model_version != "1" or not np.array_equal(
                    fp64_output(response), expected
                ):
                    wrong.append(response.model_version)

        watcher = threading.Thread(target=watch)
        watcher.start()
        clients = [threading.Thread(target=client) for _ in range(8)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(120)
        done.set()
        watcher.join()
        ask = models_pb2.GetShadowComparisonRequest(name=name, alias="prod")
        found = models(channel).GetShadowComparison(ask)
        deadline = time.monotonic() + 30
        # The last requests leave the queue a moment after their callers had their answers.
        while found.mirrored + found.dropped < 8 * 40 and time.monotonic() < deadline:
            time.sleep(0.05)
            found = models(channel).GetShadowComparison(ask)
    assert wrong == []
    assert seen and max(waiting for waiting, _ in seen) <= mirror.max_waiting
    assert max(held for _, held in seen) <= mirror.max_bytes
    assert found.mirrored + found.dropped == 8 * 40
    assert found.dropped > 0 and found.mirrored > 0
