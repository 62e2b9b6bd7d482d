"""The real `mlgate serve` process: it serves, and SIGTERM drains before it exits."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mlgate.v1 import jobs_pb2
from tests.support.fresh import free_port
from tests.support.gateway_calls import assert_well_formed, diabetes_request, first_event, jobs


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    mlgate = Path(sys.executable).parent / "mlgate"
    process = subprocess.Popen(
        [str(mlgate), "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "serving on port" in line:
            break
    else:
        pytest.fail(f"mlgate serve exited with {process.wait()} before serving")
    yield process, f"127.0.0.1:{port}"
    if process.poll() is None:
        process.kill()
        process.wait()


def test_sigterm_lets_a_running_stream_finish_then_exits_cleanly(served) -> None:
    process, address = served
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest()).status == (
            health_pb2.HealthCheckResponse.SERVING
        )
        stream = jobs(channel).Train(
            diabetes_request(params={"n_estimators": 300, "max_depth": 8}), timeout=60
        )
        events = [first_event(stream)]
        process.send_signal(signal.SIGTERM)
        events += [response.event for response in stream]
    assert_well_formed(events)
    assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
    assert process.wait(timeout=30) == 0
