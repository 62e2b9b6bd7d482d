"""Fixtures every test folder can use."""

from tests.support.s3 import s3_server
from tests.support.system import channel, embedded, embedded_gateway

__all__ = ["channel", "embedded", "embedded_gateway", "s3_server"]
