"""A scripted gateway for protocol tests: real gRPC on a loopback port, replies chosen by the test.

The real gateway cannot be made to break a stream at an exact event, or to repeat events on
resume; this one can, so the client's resume rules are checked exactly. Everything else is
tested against the real embedded system.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field

import grpc

from mlgate.v1 import datasets_pb2, datasets_pb2_grpc, jobs_pb2, jobs_pb2_grpc

JOB = "job_" + "b" * 32
MODEL = "mdl_" + "b" * 32


def training_events() -> list[jobs_pb2.JobEvent]:
    """A whole successful training job: QUEUED, four stages, SUCCEEDED."""
    stages = [
        jobs_pb2.STAGE_LOADING_DATA,
        jobs_pb2.STAGE_FITTING,
        jobs_pb2.STAGE_EVALUATING,
        jobs_pb2.STAGE_SAVING,
    ]
    events = [jobs_pb2.JobEvent(job_id=JOB, seq=1, state=jobs_pb2.JOB_STATE_QUEUED)]
    for seq, stage in enumerate(stages, 2):
        events.append(
            jobs_pb2.JobEvent(
                job_id=JOB, seq=seq, state=jobs_pb2.JOB_STATE_RUNNING, stage=stage, progress=seq / 6
            )
        )
    result = jobs_pb2.TrainResult(model_id=MODEL, metrics={"r2": 0.5})
    events.append(
        jobs_pb2.JobEvent(
            job_id=JOB, seq=6, state=jobs_pb2.JOB_STATE_SUCCEEDED, progress=1.0, train_result=result
        )
    )
    return events


@dataclass
class Script:
    """What the scripted gateway does; the test reads back what it was asked."""

    events: Sequence[jobs_pb2.JobEvent] = field(default_factory=training_events)
    # Train sends this many events, then ends with ``break_code``.
    break_after: int | None = None
    break_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    # WatchJob fails this many times with UNAVAILABLE before it answers.
    watch_failures: int = 0
    # WatchJob ignores after_seq and sends everything (a misbehaving server).
    watch_repeats: bool = False
    watch_after_seqs: list[int] = field(default_factory=list)
    uploads: list[list[datasets_pb2.UploadDatasetRequest]] = field(default_factory=list)
    train_closed: threading.Event = field(default_factory=threading.Event)


class _Jobs(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, script: Script) -> None:
        self.script = script

    def Train(self, request, context) -> Iterator[jobs_pb2.TrainResponse]:
        context.add_callback(self.script.train_closed.set)
        count = self.script.break_after
        for event in self.script.events[:count]:
            yield jobs_pb2.TrainResponse(event=event)
        if count is not None:
            context.abort(self.script.break_code, "the gateway went away")
        # A job that never ends unless the client leaves.
        threading.Event().wait(30)

    def WatchJob(self, request, context) -> Iterator[jobs_pb2.WatchJobResponse]:
        self.script.watch_after_seqs.append(request.after_seq)
        if self.script.watch_failures > 0:
            self.script.watch_failures -= 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "still restarting")
        for event in self.script.events:
            if event.seq > request.after_seq or self.script.watch_repeats:
                yield jobs_pb2.WatchJobResponse(event=event)


class _Datasets(datasets_pb2_grpc.DatasetServiceServicer):
    def __init__(self, script: Script) -> None:
        self.script = script

    def UploadDataset(self, request_iterator, context) -> datasets_pb2.UploadDatasetResponse:
        messages = list(request_iterator)
        self.script.uploads.append(messages)
        size = sum(len(m.chunk) for m in messages)
        return datasets_pb2.UploadDatasetResponse(
            dataset=datasets_pb2.Dataset(id=messages[0].dataset_id, size_bytes=size)
        )


class ScriptedGateway:
    """A gRPC server on 127.0.0.1 playing ``script``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        # Only the methods a test plays are defined; the others answer UNIMPLEMENTED.
        jobs = _Jobs(script)  # type: ignore[abstract]
        datasets = _Datasets(script)  # type: ignore[abstract]
        jobs_pb2_grpc.add_JobServiceServicer_to_server(jobs, self.server)
        datasets_pb2_grpc.add_DatasetServiceServicer_to_server(datasets, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(None).wait()
