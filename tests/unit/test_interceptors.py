"""The edge chain: every kind of RPC maps every error the same way, in one place."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from brokers.errors import BrokerUnavailable
from mlgate.errors import InvalidField
from mlgate.store_errors import JobStoreUnavailable
from mlgate.v1 import datasets_pb2, datasets_pb2_grpc, jobs_pb2, jobs_pb2_grpc
from server.error_mapping import MAX_MESSAGE_BYTES, Backends
from server.interceptors import edge_chain
from storage.errors import IntegrityError, StorageError, StorageUnavailable
from tests.support.system import gateway_settings

Context = grpc.aio.ServicerContext[Any, Any]
SECRET = "redis://:hunter2@10.1.2.3:6379 at /srv/mlgate/data"


class Failing(jobs_pb2_grpc.JobServiceServicer, datasets_pb2_grpc.DatasetServiceServicer):
    """Raises ``error`` from a unary, a server-streaming and a client-streaming method."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def GetJob(self, request: jobs_pb2.GetJobRequest, context: Context) -> Any:
        raise self.error

    async def Train(
        self, request: jobs_pb2.TrainRequest, context: Context
    ) -> AsyncIterator[jobs_pb2.TrainResponse]:
        yield jobs_pb2.TrainResponse(event=jobs_pb2.JobEvent(job_id="job_1", seq=1))
        raise self.error

    async def UploadDataset(
        self, request_iterator: AsyncIterator[datasets_pb2.UploadDatasetRequest], context: Context
    ) -> Any:
        async for _ in request_iterator:
            pass
        raise self.error

    async def CancelJob(self, request: jobs_pb2.CancelJobRequest, context: Context) -> Any:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours")


def _failing(error: Exception) -> Failing:
    return Failing(error)  # type: ignore[abstract]  # the methods it lacks answer UNIMPLEMENTED


Client = Callable[[grpc.aio.Channel], Awaitable[None]]


def _serve(tmp_path: Path, servicer: Failing, client: Client) -> None:
    """Run ``client`` against a server with ``servicer`` behind the gateway's edge chain."""

    async def main() -> None:
        settings = gateway_settings(tmp_path).gateway
        backends = Backends.of(settings.broker.kind, settings.storage_url, settings.store_url)
        server = grpc.aio.server(interceptors=edge_chain(backends))
        jobs_pb2_grpc.add_JobServiceServicer_to_server(servicer, server)
        datasets_pb2_grpc.add_DatasetServiceServicer_to_server(servicer, server)
        health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        reflection.enable_server_reflection(("mlgate.v1.JobService",), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await client(channel)
        finally:
            await server.stop(None)

    asyncio.run(main())


async def _statuses(channel: grpc.aio.Channel) -> list[tuple[grpc.StatusCode, str]]:
    """What a unary, a server-streaming and a client-streaming call answered."""
    jobs = jobs_pb2_grpc.JobServiceStub(channel)
    uploads = datasets_pb2_grpc.DatasetServiceStub(channel)
    answers = []
    try:
        await jobs.GetJob(jobs_pb2.GetJobRequest())
    except grpc.aio.AioRpcError as exc:
        answers.append((exc.code(), exc.details() or ""))
    stream = jobs.Train(jobs_pb2.TrainRequest())
    first: Any = await stream.read()
    assert first.event.seq == 1, "replies before the error reach the client"
    try:
        await stream.read()
    except grpc.aio.AioRpcError as exc:
        answers.append((exc.code(), exc.details() or ""))
    try:
        await uploads.UploadDataset(iter([datasets_pb2.UploadDatasetRequest(chunk=b"a")]))
    except grpc.aio.AioRpcError as exc:
        answers.append((exc.code(), exc.details() or ""))
    return answers


AGAIN = "is unreachable; try again shortly"


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (InvalidField("rows", "is empty"), grpc.StatusCode.INVALID_ARGUMENT, "rows: is empty"),
        (
            BrokerUnavailable(SECRET),
            grpc.StatusCode.UNAVAILABLE,
            f"the job broker (memory) {AGAIN}",
        ),
        (
            JobStoreUnavailable(SECRET),
            grpc.StatusCode.UNAVAILABLE,
            f"the job store (sqlite) {AGAIN}",
        ),
        (
            StorageUnavailable(SECRET),
            grpc.StatusCode.UNAVAILABLE,
            f"the object store (local directory) {AGAIN}",
        ),
        (
            StorageError(SECRET),
            grpc.StatusCode.INTERNAL,
            "the object store (local directory) failed; mlgate's logs say why; tell its operator",
        ),
        (
            IntegrityError("model m has a manifest but no artifact"),
            grpc.StatusCode.DATA_LOSS,
            "model m has a manifest but no artifact",
        ),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else "",
)
def test_every_kind_of_rpc_maps_an_error_the_same_way(tmp_path, error, code, message) -> None:
    async def client(channel: grpc.aio.Channel) -> None:
        assert await _statuses(channel) == [(code, message)] * 3

    _serve(tmp_path, _failing(error), client)


def test_an_unexpected_error_is_internal_with_a_reference_to_its_logged_traceback(
    tmp_path, caplog
) -> None:
    caplog.set_level(logging.ERROR, logger="mlgate.failures")

    async def client(channel: grpc.aio.Channel) -> None:
        answers = await _statuses(channel)
        assert {code for code, _ in answers} == {grpc.StatusCode.INTERNAL}
        for _, message in answers:
            found = re.fullmatch(
                r"internal error \(ref ([0-9a-f]{12})\); mlgate's logs say why; "
                r"tell its operator",
                message,
            )
            assert found, message
            logged = [r for r in caplog.records if found[1] in r.getMessage()]
            assert len(logged) == 1 and logged[0].exc_info is not None
            assert "ZeroDivisionError" in caplog.text

    _serve(tmp_path, _failing(ZeroDivisionError(SECRET)), client)


def test_a_huge_message_is_cut_to_a_size_every_client_accepts(tmp_path) -> None:
    async def client(channel: grpc.aio.Channel) -> None:
        for code, message in await _statuses(channel):
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            assert message.startswith("rows: ééé")
            assert len(message.encode()) <= MAX_MESSAGE_BYTES
            assert message.endswith(f"… (cut from {2 * 100_000 + 6} bytes)")

    _serve(tmp_path, _failing(InvalidField("rows", "é" * 100_000)), client)


def test_a_status_a_handler_sets_itself_passes_unchanged(tmp_path) -> None:
    async def client(channel: grpc.aio.Channel) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as excinfo:
            await jobs_pb2_grpc.JobServiceStub(channel).CancelJob(jobs_pb2.CancelJobRequest())
        assert (excinfo.value.code(), excinfo.value.details()) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "not yours",
        )

    _serve(tmp_path, _failing(ZeroDivisionError()), client)


def test_health_watch_and_reflection_work_through_the_chain(tmp_path) -> None:
    async def client(channel: grpc.aio.Channel) -> None:
        # Watch writes to its context instead of yielding; reflection streams both ways.
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        info = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name async for r in info for s in r.list_services_response.service}
        assert names == {"mlgate.v1.JobService"}

    _serve(tmp_path, _failing(ZeroDivisionError()), client)
