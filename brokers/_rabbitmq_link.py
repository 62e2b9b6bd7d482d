"""The RabbitMQ backend's IO thread and its self-healing connections.

pika connections are not thread-safe, so one thread per broker object runs pika's event loop and
everything that touches pika happens there: other threads hand it work with ``IOThread.call`` or
``IOThread.run``. Because that thread never runs a job, heartbeats flow while handlers block for
hours.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import pika
from pika.adapters.select_connection import IOLoop

from brokers._backoff import backoff
from brokers.errors import BrokerClosed, BrokerUnavailable
from mlgate.metrics import BROKER_RECONNECTS

__all__ = ["AmqpLink", "IOThread"]

log = logging.getLogger("brokers.rabbitmq")
T = TypeVar("T")


class IOThread:
    """The one thread that runs pika's event loop for all of a broker's connections."""

    def __init__(self, name: str) -> None:
        self.loop = IOLoop()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping:
            try:
                self.loop.start()
            except Exception:
                # A bug in a callback must not take every connection of the process down with it.
                log.exception("error on the RabbitMQ IO thread; carrying on")
        self.loop.close()

    @property
    def current(self) -> bool:
        return threading.current_thread() is self._thread

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the IO thread soon; errors are logged."""
        if self._stopping:
            raise BrokerClosed("the broker is closed")
        self.loop.add_callback_threadsafe(_guarded(fn))

    def call_later(self, delay: float, fn: Callable[[], None]) -> object:
        """From the IO thread: run ``fn`` after ``delay`` seconds; returns a handle to cancel."""
        return self.loop.call_later(delay, _guarded(fn))

    def cancel_later(self, handle: object) -> None:
        self.loop.remove_timeout(handle)

    def run(self, fn: Callable[[], T], timeout: float) -> T:
        """Run ``fn`` on the IO thread and return its result (or raise its exception)."""
        if self.current:
            return fn()
        result: Future[T] = Future()

        def task() -> None:
            try:
                result.set_result(fn())
            except BaseException as exc:
                result.set_exception(exc)

        if self._stopping:
            raise BrokerClosed("the broker is closed")
        if not self._thread.is_alive():
            raise BrokerUnavailable("the broker is not started")
        self.loop.add_callback_threadsafe(task)
        try:
            return result.result(timeout)
        except TimeoutError:
            raise BrokerUnavailable(
                f"the RabbitMQ IO thread did not answer in {timeout}s"
            ) from None

    def stop(self, timeout: float) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.loop.add_callback_threadsafe(self.loop.stop)
        if not self.current:
            self._thread.join(timeout)


def _guarded(fn: Callable[[], None]) -> Callable[[], None]:
    def guarded() -> None:
        try:
            fn()
        except Exception:
            log.exception("error in a RabbitMQ callback")

    return guarded


class AmqpLink:
    """One AMQP connection that reopens itself, with backoff and jitter, whenever it is lost.

    ``on_open(connection)`` and ``on_lost()`` run on the IO thread each time the connection comes
    up or goes down, so the owner can open its channels again.
    """

    def __init__(
        self,
        io: IOThread,
        parameters: pika.ConnectionParameters,
        name: str,
        on_open: Callable[[Any], None],
        on_lost: Callable[[], None],
    ) -> None:
        self.io = io
        self.name = name
        self.up = threading.Event()
        self.closed = threading.Event()
        self.blocked = False
        self.last_error = "not connected yet"
        #: The open connection, or None; read and written on the IO thread only.
        self.connection: Any = None
        self._parameters = parameters
        self._on_open_cb = on_open
        self._on_lost_cb = on_lost
        self._current: Any = None
        self._attempt = 0
        self._retry: object = None
        self._closing = False
        self._opened = False

    def start(self) -> None:
        self.io.call(self._connect)

    def _connect(self) -> None:
        self._retry = None
        if self._closing:
            return
        self._current = pika.SelectConnection(
            self._parameters,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_closed,
            custom_ioloop=self.io.loop,
        )

    def _on_open(self, connection: Any) -> None:
        self.connection = connection
        self._attempt = 0
        self.blocked = False
        connection.add_on_connection_blocked_callback(lambda *_: self._set_blocked(True))
        connection.add_on_connection_unblocked_callback(lambda *_: self._set_blocked(False))
        self.up.set()
        if self._opened:
            BROKER_RECONNECTS.inc()
        self._opened = True
        log.info("RabbitMQ %s connection open", self.name)
        self._on_open_cb(connection)

    def _set_blocked(self, blocked: bool) -> None:
        self.blocked = blocked
        if blocked:
            log.warning("RabbitMQ blocks the %s connection (a resource alarm)", self.name)
        else:
            log.info("RabbitMQ unblocked the %s connection", self.name)

    def _on_open_error(self, _connection: Any, error: BaseException) -> None:
        self._current = None
        self.last_error = _describe(error)
        level = logging.WARNING if self._attempt % 10 == 0 else logging.DEBUG
        log.log(level, "cannot connect the RabbitMQ %s connection: %s", self.name, self.last_error)
        self._retry_later()

    def _on_closed(self, _connection: Any, reason: BaseException) -> None:
        self.connection = None
        self._current = None
        self.up.clear()
        self.blocked = False
        self.last_error = _describe(reason)
        if not self._closing:
            log.warning("RabbitMQ %s connection lost: %s", self.name, self.last_error)
        self._on_lost_cb()
        self._retry_later()

    def _retry_later(self) -> None:
        if self._closing:
            self.closed.set()
            return
        self._retry = self.io.call_later(backoff(self._attempt), self._connect)
        self._attempt += 1

    def close(self, timeout: float) -> None:
        """Close the connection and stop reconnecting."""
        try:
            self.io.run(self._close, timeout)
        except (BrokerClosed, BrokerUnavailable):
            return
        self.closed.wait(timeout)

    def _close(self) -> None:
        self._closing = True
        if self._retry is not None:
            self.io.cancel_later(self._retry)
            self._retry = None
        current = self._current
        if current is None or current.is_closed or current.is_closing:
            self.closed.set()
        else:
            current.close()


def _describe(error: BaseException) -> str:
    """The cause of a connection failure, which pika nests a few levels deep."""
    for _ in range(5):
        inner: Any = getattr(error, "exceptions", None) or None  # a failed connection workflow
        inner = inner[-1] if inner else getattr(error, "exception", None)  # a failed connector
        if inner is None and error.args and isinstance(error.args[0], BaseException):
            inner = error.args[0]
        if not isinstance(inner, BaseException):
            break
        error = inner
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else repr(error)
