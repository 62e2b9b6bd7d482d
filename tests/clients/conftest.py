"""Fixtures for the client tests: a client of a fresh embedded system."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clients import MLGateClient


@pytest.fixture
def client(embedded_gateway: str) -> Iterator[MLGateClient]:
    with MLGateClient(embedded_gateway, timeout=60) as client:
        yield client
