"""What the Redis job store adds to the contract: atomic updates from concurrent gateways, and
deletions that leave no key or index entry behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis
from google.protobuf.timestamp_pb2 import Timestamp

from mlgate.ids import new_job_id
from mlgate.v1 import jobs_pb2
from server.jobstore import open_job_store
from server.jobstore.redis import RedisJobStore
from tests.jobstore.conftest import wait_until_swept
from tests.support.fresh import unique_namespace
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


def test_concurrent_gateways_neither_lose_nor_regress_updates(
    stores: list[RedisJobStore],
) -> None:
    one, two = stores
    job = _job()
    one.create(job)
    running = jobs_pb2.JOB_STATE_RUNNING

    def send(store: RedisJobStore, seqs: range) -> None:
        for seq in seqs:
            store.record(_event(job.id, seq, running))

    threads = [
        threading.Thread(target=send, args=(one, range(2, 200, 2))),
        threading.Thread(target=send, args=(two, range(3, 200, 2))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = one.get(job.id)
    assert final is not None
    assert final.last_event.seq == 199
    seqs = [e.seq for e in two.events(job.id, 0)]
    assert seqs == sorted(seqs)
    assert seqs[0] == 1 and seqs[-1] == 199


def test_a_race_between_success_and_cancel_has_one_winner_everywhere(
    stores: list[RedisJobStore],
) -> None:
    one, two = stores
    jobs = [_job(created_ns=1_700_000_000_000_000_000 + i) for i in range(20)]
    for job in jobs:
        one.create(job)
    cancel = jobs_pb2.JOB_STATE_CANCELLED
    succeed = jobs_pb2.JOB_STATE_SUCCEEDED
    finish = threading.Thread(target=lambda: [one.record(_event(j.id, 2, succeed)) for j in jobs])
    finish.start()
    for job in jobs:
        two.cancel(job.id, _event(job.id, 0, cancel))
    finish.join()
    by_state = {
        state: {j.id for j in one.list(kind=0, state=state, page_size=50, page_token="")[0]}
        for state in (cancel, succeed, jobs_pb2.JOB_STATE_QUEUED)
    }
    assert by_state[jobs_pb2.JOB_STATE_QUEUED] == set()
    assert by_state[cancel] | by_state[succeed] == {j.id for j in jobs}
    assert by_state[cancel] & by_state[succeed] == set()
    for job in jobs:
        stored = two.get(job.id)
        assert stored is not None
        assert stored.id in by_state[stored.state]


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
