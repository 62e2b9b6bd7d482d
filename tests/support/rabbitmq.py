"""RabbitMQ for tests: the shared server on 127.0.0.1:5672, used under a fresh namespace per test
(deleted afterwards), and a private node on free ports for the tests that break or restart it."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pika
import pytest

from brokers._rabbitmq_topology import Topology
from brokers.base import Delivery
from brokers.rabbitmq import RabbitMQBroker
from tests.support.fresh import free_ports, unique_namespace
from tests.support.waiting import wait_for

__all__ = [
    "DEPLOY",
    "ROOT",
    "SHARED_URL",
    "WAIT",
    "Factory",
    "PrivateNode",
    "collect",
    "delete_namespace",
    "private",
    "private_rabbitmq",
    "rabbitmq_brokers",
    "raw_channel",
    "ready_count",
    "require_rabbitmq",
    "shared",
    "take",
    "wait_for",
]

SHARED_URL = os.environ.get("MLGATE_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
START_HINT = "start it with: rabbitmq-server -detached   (or: make services)"
# The Debian wrappers in /usr/sbin switch to the rabbitmq user; a private node runs as us.
_BIN_DIRS = ("/usr/lib/rabbitmq/bin",)
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq"


def require_rabbitmq(url: str = SHARED_URL) -> str:
    """``url`` if RabbitMQ accepts a login there; otherwise the test fails saying how to start it."""
    parameters = pika.URLParameters(url)
    parameters.socket_timeout = 3
    parameters.connection_attempts = 1
    try:
        pika.BlockingConnection(parameters).close()
    except pika.exceptions.AMQPError as exc:
        where = f"{parameters.host}:{parameters.port}"
        pytest.fail(f"RabbitMQ is not answering at {where} ({exc!r}); {START_HINT}", pytrace=False)
    return url


def delete_namespace(url: str, namespace: str) -> None:
    """Delete every queue and exchange of ``namespace``."""
    topology = Topology(namespace)
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for declared in topology.queues:
            channel.queue_delete(declared.name)
        for exchange in topology.exchanges:
            channel.exchange_delete(exchange.name)
    finally:
        connection.close()


def rabbitmq_brokers(
    url: str = SHARED_URL, **options: Any
) -> Iterator[Callable[[], RabbitMQBroker]]:
    """A factory of started brokers (each with its own connections, like separate processes)
    sharing one fresh namespace on ``url``; closes them and deletes the namespace afterwards."""
    require_rabbitmq(url)
    namespace = unique_namespace()
    made: list[RabbitMQBroker] = []

    def make() -> RabbitMQBroker:
        broker = RabbitMQBroker(url, namespace=namespace, **options)
        made.append(broker)
        broker.start()
        return broker

    try:
        yield make
    finally:
        for broker in made:
            broker.close()
        delete_namespace(url, namespace)


def _binary(name: str) -> str:
    for directory in _BIN_DIRS:
        path = Path(directory) / name
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: apt-get install rabbitmq-server", pytrace=False)
    return found


class PrivateNode:
    """A RabbitMQ node of the test's own: its own name, ports, data and logs in ``root``, no
    plugins (so no fixed ports such as the management UI's). Stop it, restart it, block it."""

    def __init__(self, root: Path, definitions: Path = DEPLOY / "definitions.json") -> None:
        """``definitions`` are loaded at boot: by default the shipped ones, with the guest user."""
        self.root = root
        self.name = f"mlgate-test-{os.getpid()}-{uuid.uuid4().hex[:6]}@localhost"
        self.port, dist_port = free_ports(2)
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        self._process: subprocess.Popen[bytes] | None = None
        for path in ("plugins", "env.conf"):
            (root / path).write_text("")
        # The node runs the configuration operators are given, so the tests vouch for it.
        shipped = (DEPLOY / "rabbitmq.conf").read_text()
        shipped = shipped.replace("/etc/rabbitmq/definitions.json", str(definitions))
        (root / "rabbitmq.conf").write_text(f"listeners.tcp.1 = 127.0.0.1:{self.port}\n{shipped}")
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        self._env.update(
            {
                "HOME": str(root),  # the Erlang cookie the node and rabbitmqctl share
                "ERL_EPMD_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODENAME": self.name,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(dist_port),
                "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
                "RABBITMQ_LOG_BASE": str(root / "log"),
                "RABBITMQ_PID_FILE": str(root / "node.pid"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "plugins"),
                "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(root / "advanced.config"),
                "RABBITMQ_CONF_ENV_FILE": str(root / "env.conf"),
                # Consumer timeouts are checked on the channel tick: every second, not minute.
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                    "-rabbit channel_tick_interval 1000 -kernel inet_dist_use_interface {127,0,0,1}"
                ),
            }
        )

    def start(self) -> None:
        with open(self.root / "server.out", "ab") as out:
            self._process = subprocess.Popen(
                [_binary("rabbitmq-server")],
                env=self._env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        # The node takes seconds to boot and nothing signals it: a login is the test of readiness.
        deadline = time.monotonic() + 120
        while not self.answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = (self.root / "server.out").read_text(errors="replace")[-2000:]
                pytest.fail(f"private RabbitMQ node did not start:\n{log}", pytrace=False)
            time.sleep(0.1)

    def answers(self) -> bool:
        """Whether the node accepts a login now."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False  # not listening yet: no need for pika (and its error logs)
        parameters = pika.URLParameters(self.url)
        parameters.socket_timeout = 1
        parameters.connection_attempts = 1
        try:
            pika.BlockingConnection(parameters).close()
        except pika.exceptions.AMQPError:
            return False
        return True

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            self.ctl("stop", timeout=60)
            process.wait(60)
        except (subprocess.SubprocessError, AssertionError):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)

    def restart(self) -> None:
        """Stop and start the whole node; durable queues and persistent messages survive."""
        self.stop()
        self.start()

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """Run ``rabbitmqctl`` against this node."""
        done = subprocess.run(
            [_binary("rabbitmqctl"), "-n", self.name, *args],
            env=self._env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, (
            f"rabbitmqctl {' '.join(args)} failed ({done.returncode}): "
            f"{done.stdout.decode()} {done.stderr.decode()}"
        )
        return done.stdout.decode()

    def version(self) -> tuple[int, ...]:
        text = self.ctl("version").strip()
        return tuple(int(part) for part in text.split(".")[:3])


@pytest.fixture(scope="session")
def private_rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateNode]:
    """A private RabbitMQ node for the whole session (starting one takes seconds). Tests that
    break it must leave it running and unblocked."""
    node = PrivateNode(tmp_path_factory.mktemp("rabbitmq"))
    node.start()
    try:
        yield node
    finally:
        node.stop()


# --- for the RabbitMQ broker's own tests ---

#: How long the broker tests wait for a delivery or a state before they fail.
WAIT = 30.0
#: The repository, where a child process starts to import mlgate's packages.
ROOT = Path(__file__).resolve().parents[2]
Factory = Callable[[], RabbitMQBroker]


@pytest.fixture
def shared() -> Iterator[Factory]:
    """Brokers on the shared server under a fresh namespace (deleted afterwards)."""
    yield from rabbitmq_brokers(SHARED_URL)


@pytest.fixture
def private(private_rabbitmq: PrivateNode) -> Iterator[Factory]:
    """Brokers on the private node, which the test may break."""
    yield from rabbitmq_brokers(private_rabbitmq.url)


@contextmanager
def raw_channel(url: str) -> Iterator[Any]:
    """A plain pika channel, to look at what the broker left on the server."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        yield connection.channel()
    finally:
        connection.close()


def ready_count(url: str, queue_name: str) -> int:
    """Messages ready (not delivered) on the server's queue."""
    with raw_channel(url) as channel:
        count: int = channel.queue_declare(queue_name, passive=True).method.message_count
        return count


def collect(into: queue.Queue[Delivery]) -> Callable[[Delivery], None]:
    """A handler that acknowledges each delivery and hands it to the test."""

    def handler(delivery: Delivery) -> None:
        delivery.ack()
        into.put(delivery)

    return handler


def take(source: queue.Queue[Any], what: str) -> Any:
    """The next item the handlers put, or a test failure naming ``what`` after ``WAIT``."""
    try:
        return source.get(timeout=WAIT)
    except queue.Empty:
        pytest.fail(f"no {what} within {WAIT}s")
