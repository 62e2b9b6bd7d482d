"""Child jobs (issue 20), on every store: TRIAL and SHARD jobs stored with their parent's id, read
back whole from the parent's index, listed by parent page by page and left out of other
listings, created at most once however often a coordinator asks, and swept like any job."""

from __future__ import annotations

import threading

import pytest

from mlgate.errors import AlreadyExists
from mlgate.store_errors import JobExists
from mlgate.v1 import jobs_pb2
from server.jobstore.base import JobStore
from tests.support.jobstores import StoreFactory, queued_job, wait_until_swept

BASE_NS = 1_700_000_000_000_000_000
TRIAL = jobs_pb2.JOB_KIND_TRIAL
SHARD = jobs_pb2.JOB_KIND_SHARD


def _parent(
    kind: jobs_pb2.JobKind.ValueType = jobs_pb2.JOB_KIND_SEARCH, at: int = 0
) -> jobs_pb2.Job:
    job = queued_job(created_ns=BASE_NS + at)
    job.kind = kind
    job.search.n_candidates = 4
    return job


def _child(parent: jobs_pb2.Job, at: int, kind: jobs_pb2.JobKind.ValueType = TRIAL) -> jobs_pb2.Job:
    job = queued_job(created_ns=BASE_NS + at)
    job.kind = kind
    job.parent_job_id = parent.id
    if kind == SHARD:
        job.shard.index = at
    else:
        job.trial.candidate = at
    return job


def _event(job_id: str, seq: int, state: int) -> jobs_pb2.JobEvent:
    return jobs_pb2.JobEvent(job_id=job_id, seq=seq, state=state)  # type: ignore[arg-type]


def _ids(jobs: list[jobs_pb2.Job]) -> list[str]:
    return [job.id for job in jobs]


def _create_after(
    start: threading.Barrier, store: JobStore, job: jobs_pb2.Job, created: list[bool]
) -> None:
    start.wait()
    created.append(store.create_if_absent(job))


def test_children_are_whole_oldest_first_and_only_the_parents(make_store: StoreFactory) -> None:
    store, other = make_store(), make_store()
    search, bystander = _parent(), _parent(at=1)
    store.create(search)
    store.create(bystander)
    # Created out of order, one at the same nanosecond as another: (create time, id) order.
    trials = [_child(search, at) for at in (30, 10, 20, 20)]
    for trial in trials:
        store.create(trial)
    store.create(_child(bystander, 15))
    oldest_first = sorted(trials, key=lambda j: (j.create_time.ToNanoseconds(), j.id))

    done = _event(trials[1].id, 2, jobs_pb2.JOB_STATE_SUCCEEDED)
    done.trial_result.fold_scores.extend([0.5, 0.75])
    done.trial_result.scoring = "r2"
    assert store.record(done) is not None

    found = other.children(search.id)
    assert _ids(found) == _ids(oldest_first)
    finished = next(job for job in found if job.id == trials[1].id)
    assert list(finished.last_event.trial_result.fold_scores) == [0.5, 0.75]
    assert finished.trial.candidate == 10 and finished.parent_job_id == search.id
    assert found == [other.get(job.id) for job in oldest_first], "whole, as get reads them"
    assert other.children(trials[0].id) == []
    assert other.children("job_" + "f" * 32) == []


def test_a_shards_rows_come_back_with_it(make_store: StoreFactory) -> None:
    store = make_store()
    score = _parent(jobs_pb2.JOB_KIND_SCORE)
    store.create(score)
    shard = queued_job(rows=3)
    shard.kind = SHARD
    shard.parent_job_id = score.id
    store.create(shard)
    (found,) = store.children(score.id)
    assert found == store.get(shard.id) and found.predict.rows == shard.predict.rows


def test_listing_a_parent_pages_through_its_children_only(make_store: StoreFactory) -> None:
    store = make_store()
    search = _parent()
    store.create(search)
    children = [_child(search, 100 + i, SHARD if i == 3 else TRIAL) for i in range(7)]
    for child in children:
        store.create(child)
    other = _parent(at=50)
    store.create(other)
    store.create(_child(other, 103))
    store.record(_event(children[2].id, 2, jobs_pb2.JOB_STATE_FAILED))
    store.record(_event(children[5].id, 2, jobs_pb2.JOB_STATE_FAILED))

    newest_first = _ids(children)[::-1]
    seen: list[str] = []
    token, pages = "", 0
    while True:
        page, token = store.list(
            kind=0, state=0, page_size=3, page_token=token, parent_job_id=search.id
        )
        seen += _ids(page)
        pages += 1
        if not token:
            break
    assert (seen, pages) == (newest_first, 3)
    assert all(job.parent_job_id == search.id for job in page)

    failed, token = store.list(
        kind=0, state=jobs_pb2.JOB_STATE_FAILED, page_size=1, page_token="", parent_job_id=search.id
    )
    assert _ids(failed) == [children[5].id] and token
    failed, token = store.list(
        kind=0,
        state=jobs_pb2.JOB_STATE_FAILED,
        page_size=1,
        page_token=token,
        parent_job_id=search.id,
    )
    assert (_ids(failed), token) == ([children[2].id], "")
    shards, _ = store.list(
        kind=SHARD, state=0, page_size=10, page_token="", parent_job_id=search.id
    )
    assert _ids(shards) == [children[3].id]
    none, token = store.list(
        kind=0, state=0, page_size=10, page_token="", parent_job_id=children[0].id
    )
    assert (none, token) == ([], "")


def test_listings_leave_children_out_unless_their_kind_is_asked_for(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    search, score = _parent(at=0), _parent(jobs_pb2.JOB_KIND_SCORE, at=1)
    train = queued_job(created_ns=BASE_NS + 2)
    for job in (search, score, train):
        store.create(job)
    # Newer than every job a user submitted, and more of them than a page holds.
    trials = [_child(search, 10 + i) for i in range(6)]
    shards = [_child(score, 20 + i, SHARD) for i in range(3)]
    for child in (*trials, *shards):
        store.create(child)
    store.record(_event(trials[0].id, 2, jobs_pb2.JOB_STATE_RUNNING))
    store.record(_event(train.id, 2, jobs_pb2.JOB_STATE_RUNNING))

    seen: list[str] = []
    token = ""
    while True:
        page, token = store.list(kind=0, state=0, page_size=2, page_token=token)
        seen += _ids(page)
        if not token:
            break
    assert seen == [train.id, score.id, search.id]
    running, _ = store.list(kind=0, state=jobs_pb2.JOB_STATE_RUNNING, page_size=10, page_token="")
    assert _ids(running) == [train.id]
    queued, _ = store.list(kind=0, state=jobs_pb2.JOB_STATE_QUEUED, page_size=2, page_token="")
    assert _ids(queued) == [score.id, search.id]

    listed, token = store.list(kind=TRIAL, state=0, page_size=4, page_token="")
    rest, last = store.list(kind=TRIAL, state=0, page_size=4, page_token=token)
    assert (_ids(listed + rest), last) == (_ids(trials)[::-1], "")
    running, _ = store.list(
        kind=TRIAL, state=jobs_pb2.JOB_STATE_RUNNING, page_size=9, page_token=""
    )
    assert _ids(running) == [trials[0].id]
    listed, _ = store.list(kind=SHARD, state=0, page_size=9, page_token="")
    assert _ids(listed) == _ids(shards)[::-1]
    searches, _ = store.list(kind=jobs_pb2.JOB_KIND_SEARCH, state=0, page_size=9, page_token="")
    assert _ids(searches) == [search.id]


def test_a_child_is_created_once_however_often_it_is_asked_for(make_store: StoreFactory) -> None:
    store, other = make_store(), make_store()
    search = _parent()
    store.create(search)
    trial = _child(search, 5)
    assert store.create_if_absent(trial) is True
    store.mark_published([search.id, trial.id])

    again = jobs_pb2.Job()
    again.CopyFrom(trial)
    again.trial.candidate = 99
    again.last_event.message = "asked for again"
    assert other.create_if_absent(again) is False
    with pytest.raises(JobExists, match=f"job {trial.id} already exists") as refused:
        other.create(again)
    assert isinstance(refused.value, AlreadyExists), "a client would be told ALREADY_EXISTS"

    assert store.get(trial.id) == trial, "the stored child is left as it was"
    assert store.events(trial.id, 0) == [trial.last_event]
    assert store.claim_unpublished(0, 10) == [], "published once: not back in the outbox"
    assert _ids(store.children(search.id)) == [trial.id]
    page, _ = store.list(kind=0, state=0, page_size=10, page_token="", parent_job_id=search.id)
    assert _ids(page) == [trial.id], "listed once"


def test_of_gateways_creating_one_child_at_once_exactly_one_creates_it(
    make_store: StoreFactory,
) -> None:
    stores = [make_store() for _ in range(4)]
    search = _parent()
    stores[0].create(search)
    for round_ in range(5):
        trial = _child(search, round_)
        start = threading.Barrier(len(stores))
        created: list[bool] = []
        threads = [
            threading.Thread(target=_create_after, args=(start, store, trial, created))
            for store in stores
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(created) == [False, False, False, True], round_
    assert len(stores[1].children(search.id)) == 5
    assert len(stores[2].claim_unpublished(0, 100)) == 6, "each recorded once, for one publish"


def test_children_are_swept_with_their_ends_and_leave_no_index_entries(
    make_short_lived_store: StoreFactory,
) -> None:
    store = make_short_lived_store()
    search = _parent()
    store.create(search)
    ended, live = _child(search, 1), _child(search, 2)
    store.create(ended)
    store.create(live)
    store.record(_event(ended.id, 2, jobs_pb2.JOB_STATE_SUCCEEDED))

    wait_until_swept(store, ended.id, live.id)
    assert _ids(store.children(search.id)) == [live.id]
    page, _ = store.list(kind=0, state=0, page_size=10, page_token="", parent_job_id=search.id)
    assert _ids(page) == [live.id]
    listed, _ = store.list(kind=TRIAL, state=0, page_size=10, page_token="")
    assert _ids(listed) == [live.id]

    # The parent ends and goes; its last child ends after it and goes too, taking the index.
    store.record(_event(search.id, 2, jobs_pb2.JOB_STATE_FAILED))
    store.record(_event(live.id, 2, jobs_pb2.JOB_STATE_CANCELLED))
    keeper = queued_job()
    store.create(keeper)
    wait_until_swept(store, live.id, keeper.id)
    wait_until_swept(store, search.id, keeper.id)
    assert store.children(search.id) == []
    page, token = store.list(kind=0, state=0, page_size=10, page_token="", parent_job_id=search.id)
    assert (page, token) == ([], "")
    assert _ids(store.list(kind=0, state=0, page_size=10, page_token="")[0]) == [keeper.id]
