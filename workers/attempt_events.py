"""The events one attempt at a job publishes: its progress, paced, and its outcome, confirmed."""

from __future__ import annotations

import logging
from typing import Any

from brokers.base import Broker
from brokers.errors import BrokerError
from mlgate import tracing
from mlgate.events import (
    ATTEMPT_SEQ_BLOCK,
    attempt_line,
    attempt_seq,
    event,
    retry_note,
    stopped_answering,
    terminal_seq,
)
from mlgate.v1 import jobs_pb2
from workers.progress import Pacer

__all__ = ["AttemptEvents"]

log = logging.getLogger(__name__)


class AttemptEvents:
    """Publishes one attempt's events for one job, numbered in the attempt's own seq block; its
    progress at the pacer's pace (``workers.progress``).

    Every event says how many attempts the job may have; each event of a later attempt says why
    the one before it ended (``retry_reason``: what the worker learnt from that attempt's
    AWAITING_RETRY event, else that its worker stopped answering, which is when a broker
    delivers a job again), and its first one says so in words: "attempt 2 of 3 (...)".
    """

    def __init__(
        self,
        broker: Broker,
        job: jobs_pb2.Job,
        attempt: int,
        timeout: float,
        max_attempts: int,
        pacer: Pacer,
        retry_reason: str = "",
    ) -> None:
        self._broker = broker
        self._job = job
        self._attempt = attempt
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._step = 0
        # A broker that counts deliveries itself needs no event to count this attempt, so a job
        # that ends within a pacing interval sends none but its outcome (half the events of a
        # seed model's job, each crossing the broker, every gateway and every watcher). The
        # embedded broker's restarts count attempts by the first event, and a later attempt's
        # first event says why it runs again: those go out at once.
        first_after = pacer.interval if broker.keeps_jobs and attempt == 1 else 0.0
        self._pace = pacer.pace(self._publish_progress, first_after)
        self._retry_reason = retry_reason or (stopped_answering(attempt - 1) if attempt > 1 else "")
        #: The stage and progress of the attempt's latest progress event (for its heartbeat).
        self.stage: int = jobs_pb2.STAGE_UNSPECIFIED
        self.progress = 0.0

    def _body(self, seq: int, state: int, **fields: Any) -> bytes:
        body = event(
            self._job.id,
            seq,
            state,
            attempt=self._attempt,
            max_attempts=self._max_attempts,
            retry_reason=self._retry_reason,
            **fields,
        )
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
        # Two numbers of the block stay free: the attempt's AWAITING_RETRY event and its outcome.
        if self._step >= ATTEMPT_SEQ_BLOCK - 3:
            return
        self._step += 1
        self.stage, self.progress = stage, progress
        if self._step == 1 and self._attempt > 1:
            line = attempt_line(self._attempt, self._max_attempts, self._retry_reason)
            message = f"{line}; {message}" if message else line
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

    def waiting(self, service: str, waited: float) -> None:
        """The attempt waits for ``service`` to come back, and has for ``waited`` seconds."""
        since = f" for {waited:.0f} s" if waited >= 1 else ""
        message = f"waiting for {service}{since}"
        self.running(jobs_pb2.STAGE_WAITING_FOR_STORE, self.progress, message)

    def awaiting_retry(self, reason: str) -> None:
        """The attempt ends without an outcome, for ``reason``: the broker delivers it again."""
        note = retry_note(self._job.id, self._attempt, self._max_attempts, reason)
        note.progress = self.progress
        self._pace.close()
        try:
            self._broker.publish_event(note.SerializeToString(), timeout=self._timeout)
        except BrokerError as exc:
            log.warning(
                "job %s: why attempt %d ended was not published: %s",
                self._job.id,
                self._attempt,
                exc,
            )

    def succeeded(self, **result: Any) -> None:
        self.send(terminal_seq(self._attempt), jobs_pb2.JOB_STATE_SUCCEEDED, progress=1.0, **result)

    def failed(self, code: str, message: str) -> None:
        self.send(
            terminal_seq(self._attempt),
            jobs_pb2.JOB_STATE_FAILED,
            error=jobs_pb2.JobError(code=code, message=message),
            message=message,
        )
