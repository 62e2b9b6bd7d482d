"""Brokers: the contract (``base``), and its implementations ``memory``, ``rabbitmq``, ``redis``.

``open_broker`` is the one place an implementation is chosen, from ``BrokerSettings`` (read from
the environment at an entry point); drivers are imported lazily so the embedded broker needs
neither pika nor redis at run time. Nothing outside this package names a backend: what a caller
must know about one is a property of the contract (``Broker.name``, ``Broker.keeps_jobs``).
"""

from __future__ import annotations

from brokers.base import (
    PREDICT_QUEUE,
    PRIOR_ATTEMPTS_HEADER,
    QUEUES,
    TRAIN_QUEUE,
    Broker,
    Delivery,
    Message,
)
from brokers.errors import BrokerClosed, BrokerError, BrokerUnavailable, PublishNotConfirmed
from brokers.settings import BROKERS, EMBEDDED, BrokerSettings

__all__ = [
    "BROKERS",
    "EMBEDDED",
    "PREDICT_QUEUE",
    "PRIOR_ATTEMPTS_HEADER",
    "QUEUES",
    "TRAIN_QUEUE",
    "Broker",
    "BrokerClosed",
    "BrokerError",
    "BrokerSettings",
    "BrokerUnavailable",
    "Delivery",
    "Message",
    "PublishNotConfirmed",
    "open_broker",
]


def open_broker(settings: BrokerSettings) -> Broker:
    """The broker ``settings`` describe, not yet started."""
    if settings.kind == "memory":
        from brokers.memory import MemoryBroker

        return MemoryBroker()
    if settings.kind == "rabbitmq":
        from brokers.rabbitmq import RabbitMQBroker

        return RabbitMQBroker.from_settings(settings)
    if settings.kind == "redis":
        from brokers.redis import RedisBroker

        return RedisBroker.from_settings(settings)
    raise ValueError(f"unknown broker {settings.kind!r}")
