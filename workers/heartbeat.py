"""A worker's heartbeat: every third of its interval it tells the gateways, through the broker,
that it is alive, who it is and what it runs (``status_pb2.Worker``).

A gateway counts a worker out once a whole interval passes without a heartbeat (see
``server.heartbeats``), so a worker that dies or loses its broker is seen gone within its
interval; a worker that stops says so in its last heartbeat and is counted out at once. A
heartbeat the broker cannot take now is skipped: the next one says the same, and more recently.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from brokers.base import Broker
from brokers.errors import BrokerError
from mlgate.v1 import status_pb2
from mlgate.version import installed_version
from workers.running import RunningJobs

__all__ = ["Heartbeat"]

log = logging.getLogger(__name__)

# Heartbeats per interval: one or two may be lost or late before the worker is counted out.
BEATS_PER_INTERVAL = 3


class Heartbeat:
    """The thread that sends a worker's heartbeats, from ``start`` until ``stop``."""

    def __init__(
        self, broker: Broker, running: RunningJobs, *, interval: float, max_attempts: int
    ) -> None:
        self._broker = broker
        self._running = running
        self._interval = interval
        host, pid = socket.gethostname(), os.getpid()
        self.identity = status_pb2.Worker(
            id=f"{host}-{pid}-{uuid.uuid4().hex[:8]}",
            host=host,
            pid=pid,
            broker=broker.name,
            heartbeat_interval_seconds=interval,
            max_attempts=max_attempts,
            version=installed_version(),
        )
        self.identity.start_time.GetCurrentTime()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating, and say so: the gateways count this worker out at once."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.beat(stopping=True)

    def _run(self) -> None:
        while True:
            self.beat()
            if self._stopping.wait(self._interval / BEATS_PER_INTERVAL):
                return

    def beat(self, *, stopping: bool = False) -> None:
        """Send one heartbeat now."""
        beat = status_pb2.Worker()
        beat.CopyFrom(self.identity)
        beat.stopping = stopping
        beat.running.extend(self._running.describe())
        try:
            self._broker.publish_heartbeat(beat.SerializeToString())
        except BrokerError as exc:
            if not self._failing:  # once per outage: the broker's own log says the rest
                log.warning("heartbeats not sent while the broker is away: %s", exc)
            self._failing = True
            return
        self._failing = False
