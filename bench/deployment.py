"""mlgate as operators run it, for the benchmarks: ``mlgate serve``, or ``mlgate gateway`` with
``mlgate worker`` processes, each a process of its own sharing a data directory and a namespace.

The benchmarks keep their own launcher rather than the tests' helpers: the bench is a tool an
operator runs, and must not need the test suite to be importable.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.inputs import DIABETES_FEATURES
from mlgate.v1 import jobs_pb2, jobs_pb2_grpc

__all__ = ["Deployment", "free_port", "train_forest"]

MLGATE = str(Path(sys.executable).parent / "mlgate")
_START_TIMEOUT = 120.0


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def train_forest(channel: grpc.Channel, name: str) -> None:
    """Train a small forest on the diabetes dataset as the next version of ``name`` and wait
    for it to succeed."""
    stub = jobs_pb2_grpc.JobServiceStub(channel)
    request = jobs_pb2.TrainRequest(
        dataset_id="diabetes", features=DIABETES_FEATURES, target="target", model_name=name
    )
    request.params.update({"max_depth": 3, "n_estimators": 100})
    last = None
    for response in stub.Train(request, timeout=300):
        last = response.event
    assert last is not None and last.state == jobs_pb2.JOB_STATE_SUCCEEDED, last


class Deployment:
    """The processes of one system under test; ``stop`` ends them all (SIGTERM, then SIGKILL)."""

    def __init__(
        self, tmp: Path, broker: str, namespace: str, env: Mapping[str, str] | None = None
    ) -> None:
        """``env``: more ``MLGATE_*`` variables every process gets (a job store URL, say)."""
        self._tmp = tmp
        self._env = {
            **os.environ,
            "MLGATE_BROKER": broker,
            "MLGATE_NAMESPACE": namespace,
            "MLGATE_DATA_DIR": str(tmp / "data"),
            **(env or {}),
        }
        self._processes: list[tuple[subprocess.Popen[bytes], Path]] = []
        self._commands: list[str] = []

    def _spawn(self, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = self._tmp / f"{args[0]}-{len(self._processes)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [MLGATE, *args], stdout=out, stderr=subprocess.STDOUT, env=self._env
            )
        self._processes.append((process, log))
        self._commands.append(args[0])
        return process, log

    def pids(self, command: str) -> list[int]:
        """The process ids of the ``mlgate <command>`` processes started, in order."""
        return [
            p.pid for (p, _), c in zip(self._processes, self._commands, strict=True) if c == command
        ]

    def serve(self) -> str:
        """``mlgate serve`` (gateway and worker in one process); its address once SERVING."""
        return self._gateway("serve")

    def gateway(self) -> str:
        """An ``mlgate gateway``; its address once SERVING."""
        return self._gateway("gateway")

    def _gateway(self, command: str) -> str:
        address = f"127.0.0.1:{free_port()}"
        process, log = self._spawn(command, "--port", address.rsplit(":", 1)[1])
        deadline = time.monotonic() + _START_TIMEOUT
        while not _serving(address):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlgate {command} did not start:\n{log.read_text()}")
            time.sleep(0.2)  # a process start has no event to await
        return address

    def workers(self, count: int) -> None:
        """``count`` ``mlgate worker`` processes, returned once each has subscribed."""
        started = [self._spawn("worker") for _ in range(count)]
        deadline = time.monotonic() + _START_TIMEOUT
        for process, log in started:
            while "mlgate worker running" not in log.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlgate worker did not start:\n{log.read_text()}")
                time.sleep(0.1)  # its log is the only signal a separate process gives

    def stop(self) -> None:
        for process, _ in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in self._processes:
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _serving(address: str) -> bool:
    # A fresh channel each time: a refused connection puts a channel into backoff.
    with grpc.insecure_channel(address) as channel:
        try:
            check = health_pb2_grpc.HealthStub(channel).Check
            reply = check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
