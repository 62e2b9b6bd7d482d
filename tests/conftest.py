"""Fixtures every test folder can use; session-scoped servers are registered here once."""

from tests.support.rabbitmq import private_rabbitmq
from tests.support.s3 import s3_server
from tests.support.system import channel, embedded, embedded_gateway

__all__ = ["channel", "embedded", "embedded_gateway", "private_rabbitmq", "s3_server"]
