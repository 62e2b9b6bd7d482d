"""A whole mlgate system in the test process: gateway and workers on the embedded broker."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from mlgate.settings import Settings
from server.app import Gateway

__all__ = ["RunningGateway", "embedded_gateway", "gateway_settings", "running_gateway"]


@dataclass
class RunningGateway:
    """A gateway served from its own event loop on a background thread."""

    gateway: Gateway
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gateway.port}"

    def stop(self, grace: float = 2.0) -> None:
        asyncio.run_coroutine_threadsafe(self.gateway.stop(grace), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


def running_gateway(settings: Settings, *, embedded_workers: bool = True) -> RunningGateway:
    """Start a gateway on a fresh thread and loop; returns once it is serving."""
    loop = asyncio.new_event_loop()
    started: Future[Gateway] = Future()

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            try:
                gateway = Gateway(settings, embedded_workers=embedded_workers)
                await gateway.start()
                started.set_result(gateway)
            except BaseException as exc:
                started.set_exception(exc)

        task = loop.create_task(boot())
        loop.run_forever()
        del task
        loop.close()

    thread = threading.Thread(target=run, name="gateway", daemon=True)
    thread.start()
    return RunningGateway(started.result(60), loop, thread)


def gateway_settings(data_dir: Path, **changes: object) -> Settings:
    return Settings.from_env(env={}, data_dir=data_dir).with_(host="127.0.0.1", port=0, **changes)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[RunningGateway]:
    """A gateway with embedded workers on the memory broker, in a fresh data directory."""
    running = running_gateway(gateway_settings(tmp_path / "data"))
    yield running
    running.stop()


@pytest.fixture
def embedded_gateway(embedded: RunningGateway) -> str:
    """The address ("127.0.0.1:<port>") of a fresh embedded system."""
    return embedded.address


@pytest.fixture
def channel(embedded_gateway: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(embedded_gateway) as ch:
        yield ch
