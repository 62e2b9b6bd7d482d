"""The client's stream rules, checked exactly against a scripted gateway:
resume after UNAVAILABLE with WatchJob(after_seq=last seen), no gaps, no duplicates, and
no resume when it would be wrong."""

from __future__ import annotations

import io

import grpc
import pytest

from mlgate.v1 import jobs_pb2
from mlgate_client import MLGateClient, errors
from mlgate_client._channel import service_config
from tests.support.scripted_gateway import JOB, MODEL, Script, ScriptedGateway, training_events


@pytest.fixture
def play():
    started: list[ScriptedGateway] = []

    def start(script: Script) -> tuple[ScriptedGateway, MLGateClient]:
        gateway = ScriptedGateway(script)
        started.append(gateway)
        return gateway, MLGateClient(gateway.address, timeout=10, resume_timeout=5)

    yield start
    for gateway in started:
        gateway.stop()


def test_a_broken_train_stream_resumes_after_the_last_event_seen(play) -> None:
    gateway, client = play(Script(break_after=3))
    seen: list[jobs_pb2.JobEvent] = []
    result = client.train("diabetes", "target", on_event=seen.append)
    assert [e.seq for e in seen] == [1, 2, 3, 4, 5, 6]
    assert gateway.script.watch_after_seqs == [3]
    assert (result.job_id, result.model_id, result.metrics) == (JOB, MODEL, {"r2": 0.5})


def test_events_a_resumed_stream_repeats_are_dropped(play) -> None:
    _, client = play(Script(break_after=2, watch_repeats=True))
    seen: list[jobs_pb2.JobEvent] = []
    client.train("diabetes", "target", on_event=seen.append)
    assert [e.seq for e in seen] == [1, 2, 3, 4, 5, 6]


def test_resume_keeps_trying_while_the_gateway_answers_unavailable(play) -> None:
    gateway, client = play(Script(break_after=1, watch_failures=2))
    seen: list[jobs_pb2.JobEvent] = []
    client.train("diabetes", "target", on_event=seen.append)
    assert [e.seq for e in seen] == [1, 2, 3, 4, 5, 6]
    assert gateway.script.watch_after_seqs == [1, 1, 1]


def test_resume_gives_up_after_repeated_failures(play) -> None:
    gateway, client = play(Script(break_after=1, watch_failures=100))
    with pytest.raises(errors.Unavailable, match="still restarting"):
        client.train("diabetes", "target")
    # Five resumes, each a WatchJob that gRPC's retry policy tries several times over.
    attempts = service_config()["methodConfig"][0]["retryPolicy"]["maxAttempts"]
    assert len(gateway.script.watch_after_seqs) == 5 * attempts


def test_no_resume_before_the_job_id_is_known(play) -> None:
    gateway, client = play(Script(break_after=0))
    with pytest.raises(errors.Unavailable, match="the gateway went away"):
        client.train("diabetes", "target")
    assert gateway.script.watch_after_seqs == []


def test_other_errors_are_raised_not_resumed(play) -> None:
    gateway, client = play(Script(break_after=2, break_code=grpc.StatusCode.INTERNAL))
    with pytest.raises(errors.Internal, match="the gateway went away"):
        client.train("diabetes", "target")
    assert gateway.script.watch_after_seqs == []


def test_resume_fails_as_unreachable_when_the_gateway_does_not_come_back(play) -> None:
    # No terminal event to send: the job cannot end before the gateway goes away.
    gateway, _ = play(Script(events=training_events()[:2]))

    def stop_after_first(event) -> None:
        if event.seq == 1:
            gateway.stop()

    with (
        MLGateClient(gateway.address, resume_timeout=0.5) as client,
        pytest.raises(errors.ServerUnreachable, match=r"did not come back within 0\.5s"),
    ):
        client.train("diabetes", "target", on_event=stop_after_first)


def test_watch_resumes_too(play) -> None:
    events = training_events()
    gateway, client = play(Script(events=events))
    # A watch from seq 4 asks for exactly the rest.
    assert [e.seq for e in client.watch(JOB, after_seq=4)] == [5, 6]
    assert gateway.script.watch_after_seqs == [4]


def test_submit_train_returns_the_job_id_and_leaves_the_stream(play) -> None:
    gateway, client = play(Script())
    assert client.submit_train("diabetes", "target") == JOB
    # The server sees the stream end although the job has not.
    assert gateway.script.train_closed.wait(10)


def test_failed_and_cancelled_terminal_events_raise_typed_errors(play) -> None:
    error = jobs_pb2.JobError(code="FAILED_PRECONDITION", message="one class")
    failed = [
        *training_events()[:2],
        jobs_pb2.JobEvent(job_id=JOB, seq=3, state=jobs_pb2.JOB_STATE_FAILED, error=error),
    ]
    _, client = play(Script(events=failed, break_after=3))
    with pytest.raises(errors.JobFailed) as caught:
        client.train("diabetes", "target")
    assert (caught.value.code, caught.value.message, caught.value.job_id) == (
        "FAILED_PRECONDITION",
        "one class",
        JOB,
    )
    cancelled = [
        training_events()[0],
        jobs_pb2.JobEvent(
            job_id=JOB, seq=2, state=jobs_pb2.JOB_STATE_CANCELLED, message="cancelled by request"
        ),
    ]
    _, client = play(Script(events=cancelled, break_after=2))
    with pytest.raises(errors.JobCancelled, match="cancelled by request"):
        client.train("diabetes", "target")


@pytest.mark.parametrize(("size", "chunks"), [(0, [0]), (3, [3]), (10, [4, 4, 2]), (8, [4, 4])])
def test_upload_names_the_dataset_in_the_first_message_only(play, size, chunks) -> None:
    gateway, client = play(Script())
    dataset = client.upload_dataset("houses", io.BytesIO(b"x" * size), chunk_size=4)
    assert (dataset.id, dataset.size_bytes) == ("houses", size)
    [messages] = gateway.script.uploads
    assert [len(m.chunk) for m in messages] == chunks
    assert [m.dataset_id for m in messages] == ["houses"] + [""] * (len(chunks) - 1)


def test_bad_requests_are_refused_before_sending(play) -> None:
    _, client = play(Script())
    with pytest.raises(errors.InvalidArgument, match="task: 'clustering' is not one of"):
        client.train("diabetes", "target", task="clustering")
    with pytest.raises(errors.InvalidArgument, match=r"rows\[1\]: only JSON values"):
        client.predict(MODEL, [{"a": 1}, {"a": object()}])
    with pytest.raises(errors.InvalidArgument, match="state: 'done' is not one of"):
        client.list_jobs_page(state="done")
    with pytest.raises(TypeError, match="not one string"):
        client.train("diabetes", "target", features="age")
