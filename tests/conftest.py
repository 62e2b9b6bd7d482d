"""Fixtures every test folder can use."""

from tests.support.system import channel, embedded, embedded_gateway

__all__ = ["channel", "embedded", "embedded_gateway"]
