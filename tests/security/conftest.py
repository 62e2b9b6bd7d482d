"""Gateways with a tokens file (``tests.support.authed``), with and without workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.authed import Authed, start_authed


@pytest.fixture
def authed(tmp_path: Path) -> Iterator[Authed]:
    """A gateway with tokens and no workers (for calls that never reach one)."""
    running = start_authed(tmp_path, embedded_workers=False)
    yield running
    running.gateway.stop()


@pytest.fixture
def authed_system(tmp_path: Path) -> Iterator[Authed]:
    """A gateway with tokens and embedded workers."""
    running = start_authed(tmp_path, embedded_workers=True)
    yield running
    running.gateway.stop()
