"""A distributed mlgate for tests: gateway and worker processes, as operators run them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.fresh import free_port, unique_namespace

__all__ = ["Cluster", "delete_cluster_namespace"]

MLGATE = str(Path(sys.executable).parent / "mlgate")


class Cluster:
    """``mlgate gateway`` and ``mlgate worker`` processes sharing one data directory and a
    fresh broker namespace; every process's output goes to a log file the test can read."""

    def __init__(self, tmp: Path, broker: str, env: Mapping[str, str] | None = None) -> None:
        self.tmp = tmp
        self.namespace = unique_namespace()
        self.env = {
            **os.environ,
            "MLGATE_BROKER": broker,
            "MLGATE_NAMESPACE": self.namespace,
            "MLGATE_DATA_DIR": str(tmp / "data"),
            **(env or {}),
        }
        self.gateways: list[tuple[subprocess.Popen[bytes], str]] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self._logs: dict[int, Path] = {}

    def _spawn(self, args: list[str], name: str, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{name}-{len(self._logs)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [MLGATE, *args], stdout=out, stderr=subprocess.STDOUT, env={**self.env, **env}
            )
        self._logs[process.pid] = log
        return process

    def log(self, process: subprocess.Popen[bytes]) -> str:
        return self._logs[process.pid].read_text(errors="replace")

    def start_gateway(self, port: int | None = None, **env: str) -> str:
        """A gateway process on ``port`` (default: a free one), returned once SERVING."""
        port = port or free_port()
        process = self._spawn(["gateway", "--port", str(port)], "gateway", env)
        address = f"127.0.0.1:{port}"
        self.gateways.append((process, address))
        self.wait_serving(address, process)
        return address

    def wait_serving(
        self, address: str, process: subprocess.Popen[bytes], timeout: float = 60
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"gateway exited with {process.returncode}:\n{self.log(process)}")
            # A fresh channel each time: a refused connection puts a channel into backoff.
            with grpc.insecure_channel(address) as channel:
                try:
                    check = health_pb2_grpc.HealthStub(channel).Check
                    status = check(health_pb2.HealthCheckRequest(), timeout=2).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
            time.sleep(0.2)  # a process start has no event to await
        pytest.fail(f"gateway at {address} not SERVING after {timeout}s:\n{self.log(process)}")

    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        """A worker process, returned once it has subscribed to the queues."""
        (process,) = self.start_workers(1, **env)
        return process

    def start_workers(self, count: int, **env: str) -> list[subprocess.Popen[bytes]]:
        """``count`` worker processes started together, returned once each has subscribed."""
        started = [self._spawn(["worker"], "worker", env) for _ in range(count)]
        self.workers += started
        for process in started:
            self._wait_worker(process)
        return started

    def _wait_worker(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 60
        while "mlgate worker running" not in self.log(process):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"worker did not start:\n{self.log(process)}")
            time.sleep(0.1)  # its log is the only signal a separate process gives

    def worker_running(self, job_id: str, attempt: int) -> subprocess.Popen[bytes] | None:
        """The live worker whose log says it is running ``job_id`` on that attempt."""
        pattern = re.compile(rf"running train job {job_id} \(attempt {attempt}\)")
        for process in self.workers:
            if process.poll() is None and pattern.search(self.log(process)):
                return process
        return None

    def wait_running(
        self, job_id: str, attempt: int, timeout: float = 90
    ) -> subprocess.Popen[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.worker_running(job_id, attempt)
            if found is not None:
                return found
            time.sleep(0.1)  # workers' logs are the only signal a separate process gives
        logs = "\n".join(self.log(p) for p in self.workers)
        pytest.fail(f"no worker ran {job_id} attempt {attempt} within {timeout}s:\n{logs}")

    def mlgate(self, address: str, *args: str) -> subprocess.Popen[str]:
        """``mlgate --address ADDRESS ARGS`` run beside the cluster as a person would, its output
        and errors to pipes (``communicate`` them)."""
        return subprocess.Popen(
            [MLGATE, "--address", address, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(30)

    def stop(self) -> None:
        processes = [p for p, _ in self.gateways] + self.workers
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def delete_cluster_namespace(broker: str, namespace: str) -> None:
    """Remove what a cluster left on the shared RabbitMQ or Redis under ``namespace``."""
    if broker == "redis":
        from tests.support.redis import SHARED_URL, delete_namespace

        delete_namespace(SHARED_URL, namespace)
    else:
        from tests.support.rabbitmq import SHARED_URL as RABBITMQ_URL
        from tests.support.rabbitmq import delete_namespace as delete_rabbitmq_namespace

        delete_rabbitmq_namespace(RABBITMQ_URL, namespace)
