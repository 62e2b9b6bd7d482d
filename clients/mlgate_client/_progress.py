"""A job's progress on the command line: a bar redrawn in place on a terminal, and a line for
each thing a job says while it runs (a new attempt and why, a wait for a store), everywhere."""

from __future__ import annotations

from typing import TextIO

from mlgate.v1 import jobs_pb2
from mlgate_client.results import stage_name, state_name

__all__ = ["Progress"]


class Progress:
    """A one-line progress bar redrawn in place on a terminal, silent on anything else; and the
    messages of a running job's events, one line each when they change, on any stream."""

    WIDTH = 24

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._live = stream.isatty()
        self._drawn = False
        self._said = ""

    def update(self, event: jobs_pb2.JobEvent) -> None:
        running = event.state in (jobs_pb2.JOB_STATE_QUEUED, jobs_pb2.JOB_STATE_RUNNING)
        if running and event.message and event.message != self._said:
            self._said = event.message
            self.say(event.message)
        if not self._live:
            return
        if running:
            self.draw(event.progress, stage_name(event.stage) or state_name(event.state))
        else:
            self.clear()

    def say(self, text: str) -> None:
        """``text`` on a line of its own, above the bar."""
        self.clear()
        self._stream.write(f"mlgate: {text}\n")
        self._stream.flush()

    def draw(self, fraction: float, label: str) -> None:
        """The bar at ``fraction`` (0 to 1), then ``label``."""
        if not self._live:
            return
        filled = round(self.WIDTH * max(0.0, min(1.0, fraction)))
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self._stream.write(f"\r\x1b[K[{bar}] {fraction:>4.0%}  {label}")
        self._stream.flush()
        self._drawn = True

    def clear(self) -> None:
        if self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._drawn = False
