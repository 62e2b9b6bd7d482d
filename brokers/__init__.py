"""Brokers: the contract (``base``), and its implementations ``memory``, ``rabbitmq``, ``redis``.

``open_broker`` is the one place an implementation is chosen; drivers are imported lazily so the
embedded broker needs neither pika nor redis at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from brokers.base import PREDICT_QUEUE, QUEUES, TRAIN_QUEUE, Broker, Delivery, Message
from brokers.errors import BrokerClosed, BrokerError, BrokerUnavailable, PublishNotConfirmed

if TYPE_CHECKING:
    from mlgate.settings import Settings

__all__ = [
    "PREDICT_QUEUE",
    "QUEUES",
    "TRAIN_QUEUE",
    "Broker",
    "BrokerClosed",
    "BrokerError",
    "BrokerUnavailable",
    "Delivery",
    "Message",
    "PublishNotConfirmed",
    "open_broker",
]


def open_broker(settings: Settings) -> Broker:
    """The broker ``settings.broker`` names, not yet started."""
    if settings.broker == "memory":
        from brokers.memory import MemoryBroker

        return MemoryBroker()
    if settings.broker == "rabbitmq":
        from brokers.rabbitmq import RabbitMQBroker

        return RabbitMQBroker.from_settings(settings)
    if settings.broker == "redis":
        from brokers.redis import RedisBroker

        return RedisBroker.from_settings(settings)
    raise ValueError(f"unknown broker {settings.broker!r}")
