"""Broker fixtures: each backend the behaviour suite runs against, freshly namespaced per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.broker_backends import BACKENDS, BrokerFactory


@pytest.fixture(params=sorted(BACKENDS))
def make_broker(request: pytest.FixtureRequest) -> Iterator[BrokerFactory]:
    """A factory of started brokers that all talk to one fresh namespace on the same server."""
    yield from BACKENDS[request.param]()
