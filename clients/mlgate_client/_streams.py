"""How MLGateClient follows a job: its events until it ends, across broken streams and gateways.

A stream that breaks with UNAVAILABLE once the job's id is known (its gateway died, restarted or
is stopping) is resumed with WatchJob after the last event seen, on whichever gateway the channel
reaches now: every gateway reads the same job store, so no event is missed, and one at or below
the last seq is dropped, so none is repeated.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Protocol

import grpc

from mlgate.v1 import jobs_pb2
from mlgate_client.errors import (
    JobCancelled,
    JobFailed,
    MLGateError,
    ServerUnreachable,
    Unavailable,
    from_rpc_error,
)
from mlgate_client.results import TERMINAL_STATES

if TYPE_CHECKING:
    from mlgate.v1 import jobs_pb2_grpc

__all__ = ["EventCallback", "EventStream", "EventStreams"]

EventCallback = Callable[[jobs_pb2.JobEvent], None]
# A broken stream is resumed this many times in a row without a new event before giving up.
_MAX_RESUMES = 5


class _EventResponse(Protocol):
    @property
    def event(self) -> jobs_pb2.JobEvent: ...


class EventStream(Protocol):
    """A server-streaming call whose responses each carry one JobEvent."""

    def __iter__(self) -> Iterator[_EventResponse]: ...

    def cancel(self) -> bool: ...


class EventStreams:
    """Mixed into MLGateClient, which provides the stub, the timeouts and the connection."""

    if TYPE_CHECKING:
        address: str
        _jobs: jobs_pb2_grpc.JobServiceStub
        _timeout: float | None
        _resume_timeout: float

        def _connect(self) -> None: ...

        def _explained(self, error: MLGateError) -> MLGateError: ...

        def wait_ready(
            self, timeout: float, on_wait: Callable[[str], None] | None = None
        ) -> bool: ...

    def _events(
        self,
        open_stream: Callable[[], EventStream],
        job_id: str = "",
        after_seq: int = 0,
    ) -> Generator[jobs_pb2.JobEvent]:
        """One job's events until it ends; a stream that breaks once the job id is known is
        resumed with WatchJob after the last event seen, so none is missed or repeated."""
        last = after_seq
        resumes = 0
        self._connect()
        call: EventStream = open_stream()
        try:
            while True:
                try:
                    for response in call:
                        seen = response.event
                        job_id = job_id or seen.job_id
                        if seen.seq <= last:
                            continue
                        last, resumes = seen.seq, 0
                        yield seen
                        if seen.state in TERMINAL_STATES:
                            return
                    if job_id and self._ended_by(job_id, last):
                        return  # asked for what follows a finished job's last event: nothing
                    broken: MLGateError = Unavailable("the stream ended early", "UNAVAILABLE")
                except grpc.RpcError as exc:
                    broken = from_rpc_error(exc)
                    broken.__cause__ = exc
                if not (job_id and isinstance(broken, Unavailable)) or resumes >= _MAX_RESUMES:
                    raise self._explained(broken)
                resumes += 1
                self._wait_for_gateway(broken)
                call = self._jobs.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id, after_seq=last))
        finally:
            call.cancel()

    def _submitted(self, open_stream: Callable[[], EventStream], rpc: str) -> str:
        """Start a job with ``open_stream`` (a call bounded by ``_timeout``) and return its id
        as soon as it is queued, without waiting for it to run."""
        self._connect()
        call = open_stream()
        try:
            for response in call:
                return response.event.job_id
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            # Closing the stream leaves the job running: it belongs to the server now.
            call.cancel()
        raise MLGateError(f"the {rpc} stream ended before the job was queued", "INTERNAL")

    def _ended_by(self, job_id: str, seq: int) -> bool:
        """Whether the job has finished with an event at or before ``seq``: a stream that ends
        cleanly after it has nothing more to send."""
        try:
            job = self._jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=self._timeout)
        except grpc.RpcError:
            return False  # the gateway went away: resume as for any broken stream
        last = job.job.last_event
        return last.state in TERMINAL_STATES and last.seq <= seq

    def _wait_for_gateway(self, broken: MLGateError) -> None:
        if not self.wait_ready(self._resume_timeout):
            raise ServerUnreachable(
                f"lost the gateway at {self.address} and it did not come back within "
                f"{self._resume_timeout:g}s ({broken.message})",
                "UNAVAILABLE",
            ) from broken

    @staticmethod
    def _finish(
        events: Generator[jobs_pb2.JobEvent], on_event: EventCallback | None
    ) -> jobs_pb2.JobEvent:
        """The terminal event, once the callback has seen every event; failure raises."""
        final: jobs_pb2.JobEvent | None = None
        # Closed at once if the callback raises, so the stream is not left to the collector.
        with contextlib.closing(events):
            for seen in events:
                if on_event is not None:
                    on_event(seen)
                final = seen
        if final is None or final.state not in TERMINAL_STATES:
            raise MLGateError("the job's events ended before the job did", "INTERNAL")
        if final.state == jobs_pb2.JOB_STATE_FAILED:
            raise JobFailed(final.error.message, final.error.code or "UNKNOWN", final.job_id)
        if final.state == jobs_pb2.JOB_STATE_CANCELLED:
            raise JobCancelled(final.message or "the job was cancelled", final.job_id)
        return final
