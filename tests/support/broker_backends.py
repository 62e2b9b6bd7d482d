"""The broker backends the broker suites run against: each a factory of started brokers that all
talk to one fresh namespace on the same server."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from brokers.base import Broker
from brokers.memory import MemoryBroker

__all__ = ["BACKENDS", "BrokerFactory"]

BrokerFactory = Callable[[], Broker]


def _memory() -> Iterator[BrokerFactory]:
    made: list[Broker] = []

    def make() -> Broker:
        # One shared in-process broker stands for "the same broker server" across clients.
        if not made:
            made.append(MemoryBroker())
            made[0].start()
        return made[0]

    yield make
    for broker in made:
        broker.close()


BACKENDS: dict[str, Callable[[], Iterator[BrokerFactory]]] = {"memory": _memory}


def _redis() -> Iterator[BrokerFactory]:
    from tests.support.redis import redis_brokers

    yield from redis_brokers()


BACKENDS["redis"] = _redis


def _rabbitmq() -> Iterator[BrokerFactory]:
    from tests.support.rabbitmq import rabbitmq_brokers

    yield from rabbitmq_brokers()


BACKENDS["rabbitmq"] = _rabbitmq
