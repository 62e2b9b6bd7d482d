"""A PostgreSQL job store through its server's outages: calls answer UNAVAILABLE at once, naming
PostgreSQL and nothing of the URL, and the store recovers by itself when the server is back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import grpc
import pytest

from mlgate.ids import new_job_id
from mlgate.refs import parse_ref
from mlgate.store_errors import JobStoreUnavailable
from mlgate.v1 import jobs_pb2
from server.error_mapping import Backends, translate
from server.jobstore.postgres import PostgresJobStore
from server.settings import GatewaySettings
from tests.support.jobstores import queued_job
from tests.support.postgres import PrivatePostgres
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

#: What a client is told, whatever psycopg said.
TOLD = "the job store (postgresql) is unreachable; try again shortly"


@pytest.fixture
def server() -> Iterator[PrivatePostgres]:
    """A private server, initialised but not started."""
    private = PrivatePostgres()
    try:
        yield private
    finally:
        private.remove()


def _answers(store: PostgresJobStore) -> bool:
    try:
        store.get(new_job_id())
    except JobStoreUnavailable:
        return False
    return True


def _assert_refused(store: PostgresJobStore, server: PrivatePostgres, job_id: str) -> None:
    """Every kind of call is refused, at once, with a message free of the password."""
    settings = GatewaySettings.from_env({"MLGATE_STORE_URL": server.url})
    backends = Backends.of(settings.broker.kind, settings.storage_url, settings.store_url)
    running = jobs_pb2.JobEvent(job_id=job_id, seq=2, state=jobs_pb2.JOB_STATE_RUNNING)
    cancel = jobs_pb2.JobEvent(job_id=job_id, state=jobs_pb2.JOB_STATE_CANCELLED)
    calls: list[Callable[[], object]] = [
        lambda: store.create(queued_job()),
        lambda: store.get(job_id),
        lambda: store.list(kind=0, state=0, page_size=10, page_token=""),
        lambda: store.events(job_id, 0),
        lambda: store.record(running),
        lambda: store.cancel(job_id, cancel),
        lambda: store.claim_unpublished(5.0, 10),
        lambda: store.registry.resolve(parse_ref("forest@production")),
        lambda: store.registry.set_alias("forest", "production", 1),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(JobStoreUnavailable) as refused:
            call()
        assert time.monotonic() - started < 2.0, "an outage is answered at once"
        text = str(refused.value)
        assert text.startswith(f"PostgreSQL at 127.0.0.1:{server.port}/postgres is unreachable")
        assert server.password not in text
        code, told = translate(refused.value, backends, "/mlgate.v1.JobService/GetJob")
        assert (code, told) == (grpc.StatusCode.UNAVAILABLE, TOLD)
    with pytest.raises(ConnectionError, match=r"^the job store \(postgresql\) is unreachable$"):
        store.ping()


def test_a_store_started_before_its_server_and_stopped_under_it_recovers_by_itself(
    server: PrivatePostgres, caplog: pytest.LogCaptureFixture
) -> None:
    # A gateway may start before PostgreSQL: the store opens, refuses calls, and migrates the
    # schema once the server answers.
    store = PostgresJobStore.from_url(server.url)
    try:
        _assert_refused(store, server, new_job_id())
        server.start()
        wait_for(lambda: _answers(store), 30, "the store answering once the server started")

        before = queued_job()
        store.create(before)
        store.registry.update("mdl_" + "d" * 32, "kept", {}, [])

        # An outage of a few seconds, while calls keep coming.
        server.stop()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            _assert_refused(store, server, before.id)

        server.start()
        wait_for(lambda: _answers(store), 30, "the store answering again after a restart")
        assert store.get(before.id) == before, "nothing recorded before the outage is lost"
        running = jobs_pb2.JobEvent(job_id=before.id, seq=2, state=jobs_pb2.JOB_STATE_RUNNING)
        recorded = store.record(running)
        assert recorded is not None and recorded.job.state == jobs_pb2.JOB_STATE_RUNNING
        assert store.registry.entry("mdl_" + "d" * 32).description == "kept"
        store.ping()
    finally:
        store.close()
    assert not [r for r in caplog.records if server.password in r.getMessage()]
