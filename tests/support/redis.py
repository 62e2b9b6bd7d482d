"""Redis for tests: the shared server on 127.0.0.1:6379, used under a fresh namespace per test
(deleted afterwards), and private ``redis-server`` processes on free ports for fault tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Generator
from pathlib import Path

import pytest
import redis

from brokers.redis import RedisBroker, RedisOptions
from server.jobstore.redis import RedisJobStore
from tests.support.fresh import free_port, unique_namespace
from tests.support.jobstores import closing_all
from tests.support.waiting import wait_for

__all__ = [
    "FAST",
    "SHARED_URL",
    "PrivateRedis",
    "delete_namespace",
    "redis_brokers",
    "redis_stores",
    "require_redis",
    "wait_for",
]

SHARED_URL = os.environ.get("MLGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
START_HINT = (
    "start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 "
    "--save '' --appendonly no   (or: make services)"
)

#: Crash-recovery thresholds short enough for tests: a dead consumer is noticed within ~2.5 s.
FAST = RedisOptions(heartbeat_ttl=2.0, reclaim_interval=0.5, settle_timeout=20.0)


def require_redis(url: str = SHARED_URL) -> str:
    """``url`` if Redis answers there; otherwise the test fails saying how to start it."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not answering at {url} ({exc}); {START_HINT}", pytrace=False)
    finally:
        client.close()
    return url


def delete_namespace(url: str, namespace: str) -> None:
    """Delete every key a test created under ``namespace``."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.unlink(*keys)
    finally:
        client.close()


def redis_brokers(
    options: RedisOptions = FAST,
) -> Generator[Callable[[], RedisBroker], None, None]:
    """A factory of started brokers sharing one fresh namespace on the shared Redis."""
    url = require_redis()
    namespace = unique_namespace()
    made: list[RedisBroker] = []

    def make() -> RedisBroker:
        broker = RedisBroker(url, namespace=namespace, options=options)
        broker.start()
        made.append(broker)
        return broker

    try:
        yield make
    finally:
        for broker in made:
            broker.close()
        delete_namespace(url, namespace)


def redis_stores(
    retention: float = 3600.0,
) -> Generator[Callable[[], RedisJobStore], None, None]:
    """A factory of job stores sharing one fresh namespace, as several gateways would."""
    url = require_redis()
    namespace = unique_namespace()
    store_url = f"{url}?namespace={namespace}&retention={retention}"
    try:
        with closing_all(lambda: RedisJobStore.from_url(store_url)) as make:
            yield make
    finally:
        delete_namespace(url, namespace)


class PrivateRedis:
    """A ``redis-server --appendonly yes`` of the test's own, on a free port, in ``directory``;
    it can be stopped and started again on the same port with the same data."""

    def __init__(self, directory: Path, *args: str) -> None:
        """``args`` are more ``redis-server`` options (``--requirepass``, TLS ports…)."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed; apt-get install redis-server", pytrace=False
            )
        self._binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.args = args
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [
                self._binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--appendonly", "yes",
                "--save", "",
                "--logfile", "redis.log",
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            wait_for(lambda: self._answers(client), 20, f"redis-server on port {self.port}")
        finally:
            client.close()
        return self

    def _answers(self, client: redis.Redis) -> bool:
        if self._process is not None and self._process.poll() is not None:
            log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"redis-server exited with {self._process.returncode}:\n{log}")
        try:
            return bool(client.ping())
        except redis.AuthenticationError:
            return True  # it answers; the test's own clients bring the password
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """Shut down as an operator would (SIGTERM: the AOF is flushed first)."""
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _run_stuck_consumer(url: str, namespace: str, queue: str) -> None:
    """A worker that takes one job, says so on stdout and never finishes it (until killed)."""
    import threading

    from brokers.base import Delivery

    broker = RedisBroker(url, namespace=namespace, options=FAST)
    broker.start()
    forever = threading.Event()

    def stuck(delivery: Delivery) -> None:
        print(f"running {delivery.message.job_id} attempt {delivery.attempt}", flush=True)
        forever.wait()

    broker.consume(queue, stuck, prefetch=1)
    forever.wait()


if __name__ == "__main__":
    import sys

    _run_stuck_consumer(*sys.argv[1:4])
