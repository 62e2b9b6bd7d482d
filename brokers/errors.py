"""The brokers' error tree. Driver errors (pika, redis) are translated into these at the boundary.

BrokerError
├── BrokerUnavailable     the broker cannot be reached now (the gateway answers UNAVAILABLE)
│   └── PublishNotConfirmed   the broker did not confirm a publish in time
└── BrokerClosed          the broker object was closed by its owner
"""

from __future__ import annotations

__all__ = ["BrokerClosed", "BrokerError", "BrokerUnavailable", "PublishNotConfirmed"]


class BrokerError(Exception):
    """Root of the brokers' errors."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached now; retrying later may succeed."""


class PublishNotConfirmed(BrokerUnavailable):
    """A publish was not confirmed by the broker; the message may not have been accepted."""


class BrokerClosed(BrokerError):
    """The broker was closed; no more operations are possible."""
