"""Small helpers for end-to-end tests that speak raw gRPC to a gateway."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from mlgate.events import TERMINAL_STATES
from mlgate.v1 import (
    datasets_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    models_pb2_grpc,
)
from tests.support.samples import DIABETES_FEATURES as DIABETES_FEATURES
from tests.support.samples import DOC_ROW

README_ROW = DOC_ROW


def jobs(channel: grpc.Channel) -> jobs_pb2_grpc.JobServiceStub:
    return jobs_pb2_grpc.JobServiceStub(channel)


def models(channel: grpc.Channel) -> models_pb2_grpc.ModelServiceStub:
    return models_pb2_grpc.ModelServiceStub(channel)


def datasets(channel: grpc.Channel) -> datasets_pb2_grpc.DatasetServiceStub:
    return datasets_pb2_grpc.DatasetServiceStub(channel)


def rows(*items: Mapping[str, Any]) -> list[struct_pb2.Struct]:
    out = []
    for item in items:
        row = struct_pb2.Struct()
        row.update(item)
        out.append(row)
    return out


def diabetes_request(**fields: Any) -> jobs_pb2.TrainRequest:
    request = jobs_pb2.TrainRequest(
        dataset_id="diabetes", features=DIABETES_FEATURES, target="target"
    )
    for key, value in fields.items():
        if key == "params":
            request.params.update(value)
        else:
            setattr(request, key, value)
    return request


def events_of(stream: Iterable[Any]) -> list[jobs_pb2.JobEvent]:
    return [response.event for response in stream]


def first_event(stream: Any) -> jobs_pb2.JobEvent:
    """The next event of a server-streaming call (grpc's stubs type these calls loosely)."""
    event: jobs_pb2.JobEvent = next(stream).event
    return event


def hang_up(stream: Any) -> None:
    """Close a server-streaming call from the client side, as a client that goes away would."""
    stream.cancel()


def train(channel: grpc.Channel, request: jobs_pb2.TrainRequest) -> list[jobs_pb2.JobEvent]:
    return events_of(jobs(channel).Train(request, timeout=120))


def trained_model(channel: grpc.Channel, request: jobs_pb2.TrainRequest | None = None) -> str:
    events = train(channel, request or diabetes_request())
    assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED, events[-1]
    return events[-1].train_result.model_id


def assert_well_formed(events: list[jobs_pb2.JobEvent]) -> None:
    """QUEUED first, strictly increasing seq, exactly one terminal event, at the end."""
    assert events, "no events"
    assert events[0].state == jobs_pb2.JOB_STATE_QUEUED
    assert events[0].seq == 1
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs)), f"seq not strictly increasing: {seqs}"
    assert [e.state in TERMINAL_STATES for e in events] == [False] * (len(events) - 1) + [True]
    assert len({e.job_id for e in events}) == 1


def refused(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    """The status code and message a call that must fail ended with."""
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    raise AssertionError("the call succeeded")


def rpc_code(excinfo: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    """The status code of the RPC error ``pytest.raises`` caught."""
    return excinfo.value.code()


def rpc_details(excinfo: pytest.ExceptionInfo[grpc.RpcError]) -> str:
    """The message of the RPC error ``pytest.raises`` caught."""
    return excinfo.value.details() or ""
