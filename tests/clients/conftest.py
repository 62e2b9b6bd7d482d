"""Fixtures for the client tests: a client of a fresh embedded system."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlgate_client import MLGateClient
from mlgate_client.cli import main
from tests.support.cli_runner import Run


@pytest.fixture
def client(embedded_gateway: str) -> Iterator[MLGateClient]:
    with MLGateClient(embedded_gateway, timeout=60) as client:
        yield client


@pytest.fixture
def mlgate(embedded_gateway: str, capsys: pytest.CaptureFixture[str]) -> Run:
    """Run one command against the embedded gateway; returns (exit status, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        status = main(["--address", embedded_gateway, *argv])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run
