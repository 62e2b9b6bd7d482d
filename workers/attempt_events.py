"""The events one attempt at a job publishes: its progress, paced, and its outcome, confirmed."""

from __future__ import annotations

import logging
from typing import Any

from brokers.base import Broker
from brokers.errors import BrokerError
from mlgate import tracing
from mlgate.events import ATTEMPT_SEQ_BLOCK, attempt_seq, event, terminal_seq
from mlgate.v1 import jobs_pb2
from workers.progress import Pacer

__all__ = ["AttemptEvents"]

log = logging.getLogger(__name__)


class AttemptEvents:
    """Publishes one attempt's events for one job, numbered in the attempt's own seq block; its
    progress at the pacer's pace (``workers.progress``)."""

    def __init__(
        self,
        broker: Broker,
        job: jobs_pb2.Job,
        attempt: int,
        timeout: float,
        max_attempts: int,
        pacer: Pacer,
    ) -> None:
        self._broker = broker
        self._job = job
        self._attempt = attempt
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._step = 0
        self._pace = pacer.pace(self._publish_progress)

    def _body(self, seq: int, state: int, **fields: Any) -> bytes:
        body = event(self._job.id, seq, state, attempt=self._attempt, **fields)
        body.trace_context.update(tracing.inject())
        return body.SerializeToString()

    def send(self, seq: int, state: int, **fields: Any) -> None:
        """Publish the attempt's outcome, confirmed; progress still held is dropped."""
        self._pace.drop()
        self._broker.publish_event(self._body(seq, state, **fields), timeout=self._timeout)

    def _publish_progress(self, body: bytes) -> None:
        self._broker.publish_event(body, timeout=self._timeout, confirm=False)

    def close(self) -> None:
        """The attempt has ended, with or without an outcome: no more progress."""
        self._pace.close()

    def running(self, stage: int, progress: float, message: str = "") -> None:
        if self._step >= ATTEMPT_SEQ_BLOCK - 2:
            return  # the attempt's block is spent: only its outcome is left to number
        self._step += 1
        if self._step == 1 and self._attempt > 1:
            message = message or (
                f"attempt {self._attempt} of {self._max_attempts} started: the earlier one "
                "ended without an outcome"
            )
        # Progress is informative: a broker outage must not fail the job over it. Only the
        # terminal event decides the outcome, and it is retried by redelivery, not skipped. So
        # progress is not confirmed either: the outcome, confirmed, follows it in order.
        body = self._body(
            attempt_seq(self._attempt, self._step),
            jobs_pb2.JOB_STATE_RUNNING,
            stage=stage,
            progress=progress,
            message=message,
        )
        try:
            self._pace.offer(body)
        except BrokerError as exc:
            log.warning("job %s: progress event not published: %s", self._job.id, exc)

    def succeeded(self, **result: Any) -> None:
        self.send(terminal_seq(self._attempt), jobs_pb2.JOB_STATE_SUCCEEDED, progress=1.0, **result)

    def failed(self, code: str, message: str) -> None:
        self.send(
            terminal_seq(self._attempt),
            jobs_pb2.JOB_STATE_FAILED,
            error=jobs_pb2.JobError(code=code, message=message),
            message=message,
        )
