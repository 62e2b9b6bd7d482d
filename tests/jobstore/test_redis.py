"""What the Redis job store adds to the contract: deletions that leave no key or index entry
behind (a parent's index of children included), and keys under the deployment's namespace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from google.protobuf.timestamp_pb2 import Timestamp

from mlgate.ids import new_job_id
from mlgate.v1 import jobs_pb2
from server.jobstore import open_job_store
from server.jobstore.redis import RedisJobStore
from tests.support.fresh import unique_namespace
from tests.support.jobstores import wait_until_swept
from tests.support.redis import delete_namespace, redis_stores, require_redis


def _job(created_ns: int = 1_700_000_000_000_000_000) -> jobs_pb2.Job:
    job_id = new_job_id()
    stamp = Timestamp()
    stamp.FromNanoseconds(created_ns)
    job = jobs_pb2.Job(id=job_id, kind=jobs_pb2.JOB_KIND_TRAIN, state=jobs_pb2.JOB_STATE_QUEUED)
    job.create_time.CopyFrom(stamp)
    job.last_event.CopyFrom(
        jobs_pb2.JobEvent(job_id=job_id, seq=1, state=jobs_pb2.JOB_STATE_QUEUED, time=stamp)
    )
    return job


def _event(job_id: str, seq: int, state: int) -> jobs_pb2.JobEvent:
    return jobs_pb2.JobEvent(job_id=job_id, seq=seq, state=state)  # type: ignore[arg-type]


@pytest.fixture
def stores() -> Iterator[list[RedisJobStore]]:
    """Stores sharing one namespace with a one-second retention of finished jobs."""
    made = redis_stores(retention=1.0)
    make = next(made)
    yield [make(), make()]
    made.close()


def test_a_deleted_job_leaves_nothing_behind_in_keys_or_indexes(
    stores: list[RedisJobStore],
) -> None:
    store = stores[0]
    done, live = _job(), _job()
    done.kind = jobs_pb2.JOB_KIND_PREDICT
    done.predict.model_id = "mdl_" + "a" * 32
    done.predict.rows.add().update({"x": 1})
    store.create(done)
    store.create(live)
    store.record(_event(done.id, 2, jobs_pb2.JOB_STATE_SUCCEEDED))

    wait_until_swept(store, done.id, live.id)
    client = redis.Redis.from_url(require_redis())
    try:
        namespace = store._keys.ns
        assert list(client.scan_iter(match=f"{namespace}:job:{done.id}*")) == []
        for key in client.scan_iter(match=f"{namespace}:jobs*"):
            if client.type(key) == b"zset":
                assert not any(done.id.encode() in m for m in client.zrange(key, 0, -1))
    finally:
        client.close()


def test_swept_children_leave_no_parent_index_and_old_expiry_entries_still_sweep(
    stores: list[RedisJobStore],
) -> None:
    store = stores[0]
    search, keeper = _job(), _job()
    search.kind = jobs_pb2.JOB_KIND_SEARCH
    store.create(search)
    store.create(keeper)
    trials = [_job(1_700_000_000_000_000_000 + i) for i in (1, 2)]
    for trial in trials:
        trial.kind = jobs_pb2.JOB_KIND_TRIAL
        trial.parent_job_id = search.id
        store.create(trial)
    client = redis.Redis.from_url(require_redis())
    try:
        namespace = store._keys.ns
        parent_index = f"{namespace}:jobs:parent:{search.id}"
        assert client.zcard(parent_index) == 2
        # Trials are kept out of the indexes a listing without a kind reads.
        for key in (f"{namespace}:jobs", f"{namespace}:jobs:state:{jobs_pb2.JOB_STATE_QUEUED}"):
            assert not any(t.id.encode() in m for t in trials for m in client.zrange(key, 0, -1))
        # An expiry entry as written before child jobs (no parent part) is still understood.
        store.record(_event(search.id, 2, jobs_pb2.JOB_STATE_FAILED))
        entries: list[bytes] = client.zrange(f"{namespace}:jobs:expiry", 0, -1)  # type: ignore[assignment]
        assert [entry.count(b":") for entry in entries] == [3]
        for trial in trials:
            store.record(_event(trial.id, 2, jobs_pb2.JOB_STATE_SUCCEEDED))
        for trial in trials:
            wait_until_swept(store, trial.id, keeper.id)
        wait_until_swept(store, search.id, keeper.id)
        assert not client.exists(parent_index), "an emptied parent index is gone"
        assert client.zcard(f"{namespace}:jobs:expiry") == 0
        for key in client.scan_iter(match=f"{namespace}:jobs*"):
            if client.type(key) == b"zset":
                members = client.zrange(key, 0, -1)
                assert all(keeper.id.encode() in member for member in members), key
    finally:
        client.close()


def test_keys_go_under_the_url_namespace_else_the_gateway_namespace() -> None:
    """Without ``?namespace=``, a gateway's MLGATE_NAMESPACE keeps its job records apart from
    another deployment's on the same Redis; the URL's namespace, when given, wins."""
    url = require_redis()
    gateway_ns, url_ns = unique_namespace(), unique_namespace()
    client = redis.Redis.from_url(url)
    try:
        for store_url, expected in ((url, gateway_ns), (f"{url}?namespace={url_ns}", url_ns)):
            store = open_job_store(store_url, gateway_ns)
            job = _job()
            store.create(job)
            assert client.exists(f"{expected}:job:{job.id}")
            assert not client.exists(f"mlgate:job:{job.id}")
            assert store.get(job.id) == job
            store.close()
    finally:
        client.close()
        delete_namespace(url, gateway_ns)
        delete_namespace(url, url_ns)
