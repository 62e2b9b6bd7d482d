"""A whole mlgate system in the test process: gateway and workers on the embedded broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.support.background import BackgroundGateway
from tests.support.system_settings import SystemSettings

__all__ = ["RunningGateway", "embedded_gateway", "gateway_settings", "running_gateway"]

RunningGateway = BackgroundGateway


def running_gateway(
    settings: SystemSettings, *, embedded_workers: bool = True
) -> BackgroundGateway:
    """Start a gateway on a background thread; returns once it is serving."""
    return BackgroundGateway(settings, embedded_workers=embedded_workers).start()


def gateway_settings(data_dir: Path, **changes: object) -> SystemSettings:
    """Settings for a test gateway (and its workers) on a free loopback port, ignoring the
    caller's environment; ``changes`` as ``SystemSettings.with_`` takes them."""
    return SystemSettings.from_env({}, data_dir).with_(host="127.0.0.1", port=0, **changes)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[BackgroundGateway]:
    """A gateway with embedded workers on the memory broker, in a fresh data directory."""
    running = running_gateway(gateway_settings(tmp_path / "data"))
    yield running
    running.stop()


@pytest.fixture
def embedded_gateway(embedded: BackgroundGateway) -> str:
    """The address ("127.0.0.1:<port>") of a fresh embedded system."""
    return embedded.address


@pytest.fixture
def channel(embedded_gateway: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(embedded_gateway) as ch:
        yield ch
