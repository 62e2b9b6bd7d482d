"""The job store suite: written once against the contract, run against every backend."""

from __future__ import annotations

import base64
import threading

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from mlgate.errors import InvalidField
from mlgate.ids import new_job_id
from mlgate.v1 import jobs_pb2
from server.jobstore.base import JobStore
from server.paging import encode_page_token
from tests.support.jobstores import StoreFactory, wait_until_swept

FAILED = jobs_pb2.JOB_STATE_FAILED


def _job(
    kind: jobs_pb2.JobKind.ValueType = jobs_pb2.JOB_KIND_TRAIN, created_ns: int = 0
) -> jobs_pb2.Job:
    job_id = new_job_id()
    stamp = Timestamp()
    stamp.FromNanoseconds(created_ns or 1_700_000_000_000_000_000)
    job = jobs_pb2.Job(id=job_id, kind=kind, state=jobs_pb2.JOB_STATE_QUEUED)
    job.create_time.CopyFrom(stamp)
    job.update_time.CopyFrom(stamp)
    job.train.dataset_id = "diabetes"
    job.last_event.CopyFrom(
        jobs_pb2.JobEvent(job_id=job_id, seq=1, state=jobs_pb2.JOB_STATE_QUEUED, time=stamp)
    )
    return job


def _event(job_id: str, seq: int, state: int, **fields: object) -> jobs_pb2.JobEvent:
    return jobs_pb2.JobEvent(job_id=job_id, seq=seq, state=state, **fields)  # type: ignore[arg-type]


def test_created_job_reads_back_with_its_first_event(make_store: StoreFactory) -> None:
    store = make_store()
    job = _job()
    store.create(job)
    assert store.get(job.id) == job
    assert store.events(job.id, 0) == [job.last_event]
    assert store.get(new_job_id()) is None


def test_events_apply_in_order_and_duplicates_are_ignored(make_store: StoreFactory) -> None:
    store = make_store()
    job = _job()
    store.create(job)
    running = _event(job.id, 2, jobs_pb2.JOB_STATE_RUNNING, stage=jobs_pb2.STAGE_FITTING)
    updated = store.record(running)
    assert updated is not None
    assert updated.job.state == jobs_pb2.JOB_STATE_RUNNING
    assert updated.job.last_event == running
    # What went into the log, and after which of its events: a watcher that has read up to
    # there takes it without reading the log again.
    assert (updated.logged, updated.after_seq) == (running, 1)
    assert store.record(running) is None, "a redelivered event must not apply twice"
    assert store.record(_event(job.id, 1, jobs_pb2.JOB_STATE_QUEUED)) is None
    assert [e.seq for e in store.events(job.id, 0)] == [1, 2]
    assert [e.seq for e in store.events(job.id, 1)] == [2]


def test_events_recorded_together_apply_as_they_would_one_by_one(
    make_store: StoreFactory,
) -> None:
    store, other = make_store(), make_store()
    first, second = _job(), _job()
    store.create(first)
    store.create(second)
    running = _event(first.id, 2, jobs_pb2.JOB_STATE_RUNNING)
    done = _event(first.id, 3, jobs_pb2.JOB_STATE_SUCCEEDED)
    started = _event(second.id, 2, jobs_pb2.JOB_STATE_RUNNING)
    unknown = _event(new_job_id(), 2, jobs_pb2.JOB_STATE_RUNNING)
    results = store.record_all([done, started, running, unknown])
    # In the order given, per job: the job's seq 3 came before its seq 2, which is then stale.
    logged = [None if r is None else (r.logged, r.after_seq) for r in results]
    assert logged == [(done, 1), (started, 1), None, None]
    assert store.events(first.id, 0) == [first.last_event, done]
    assert store.record_all([running, done]) == [None, None], "nothing applies twice"
    seen = other.get(second.id)
    assert seen is not None and seen.state == jobs_pb2.JOB_STATE_RUNNING, "committed for all"
    assert store.record_all([]) == []

    # Two events of one job in one batch: each says what it did, the job as it left it.
    third = _job()
    store.create(third)
    steps = [_event(third.id, 2, jobs_pb2.JOB_STATE_RUNNING), _event(third.id, 3, FAILED)]
    both = store.record_all(steps)
    assert [None if r is None else (r.job.state, r.logged, r.after_seq) for r in both] == [
        (jobs_pb2.JOB_STATE_RUNNING, steps[0], 1),
        (FAILED, steps[1], 2),
    ]
    assert store.events(third.id, 1) == steps


def test_a_batch_applies_on_top_of_another_gateways_write(make_store: StoreFactory) -> None:
    one, two = make_store(), make_store()
    job, bystander = _job(), _job()
    one.create(job)
    one.create(bystander)
    # The other gateway moves the job on: what the first store remembers of it is stale now.
    assert two.record(_event(job.id, 2, jobs_pb2.JOB_STATE_RUNNING)) is not None
    done = _event(job.id, 3, jobs_pb2.JOB_STATE_SUCCEEDED)
    started = _event(bystander.id, 2, jobs_pb2.JOB_STATE_RUNNING)
    results = one.record_all([done, started])
    assert [None if r is None else (r.logged, r.after_seq) for r in results] == [
        (done, 2),
        (started, 1),
    ]
    assert [e.seq for e in two.events(job.id, 0)] == [1, 2, 3]


def test_no_event_moves_a_job_out_of_a_terminal_state(make_store: StoreFactory) -> None:
    store = make_store()
    job = _job()
    store.create(job)
    done = _event(job.id, 3, jobs_pb2.JOB_STATE_SUCCEEDED)
    done.train_result.model_id = "mdl_x"
    assert store.record(done) is not None
    assert store.record(_event(job.id, 4, jobs_pb2.JOB_STATE_RUNNING)) is None
    final = store.get(job.id)
    assert final is not None
    assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED
    assert final.last_event.train_result.model_id == "mdl_x"


def test_events_for_unknown_jobs_are_dropped(make_store: StoreFactory) -> None:
    store = make_store()
    assert store.record(_event(new_job_id(), 2, jobs_pb2.JOB_STATE_RUNNING)) is None


def test_cancel_ends_a_live_job_with_the_next_seq_and_leaves_ended_ones(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    job = _job()
    store.create(job)
    store.record(_event(job.id, 2, jobs_pb2.JOB_STATE_RUNNING))
    cancelled = store.cancel(job.id, _event(job.id, 0, jobs_pb2.JOB_STATE_CANCELLED))
    assert cancelled is not None
    assert cancelled.state == jobs_pb2.JOB_STATE_CANCELLED
    assert cancelled.last_event.seq == 3
    # A worker's late event cannot revive it, and a second cancel changes nothing.
    assert store.record(_event(job.id, 3, jobs_pb2.JOB_STATE_SUCCEEDED)) is None
    again = store.cancel(job.id, _event(job.id, 0, jobs_pb2.JOB_STATE_CANCELLED))
    assert again is not None
    assert again.last_event.seq == 3
    assert store.cancel(new_job_id(), _event("x", 0, jobs_pb2.JOB_STATE_CANCELLED)) is None


def test_list_pages_newest_first_and_filters(make_store: StoreFactory) -> None:
    store = make_store()
    base = 1_700_000_000_000_000_000
    jobs = []
    for i in range(7):
        kind = jobs_pb2.JOB_KIND_TRAIN if i % 2 == 0 else jobs_pb2.JOB_KIND_PREDICT
        job = _job(kind=kind, created_ns=base + i * 1000)
        store.create(job)
        jobs.append(job)
    newest_first = [j.id for j in reversed(jobs)]

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page, token = store.list(kind=0, state=0, page_size=3, page_token=token)
        seen += [j.id for j in page]
        pages += 1
        if not token:
            break
    assert seen == newest_first
    assert pages == 3

    trains, token = store.list(kind=jobs_pb2.JOB_KIND_TRAIN, state=0, page_size=10, page_token="")
    assert [j.id for j in trains] == [
        j.id for j in reversed(jobs) if j.kind == jobs_pb2.JOB_KIND_TRAIN
    ]
    assert token == ""

    store.record(_event(jobs[0].id, 2, jobs_pb2.JOB_STATE_FAILED))
    failed, _ = store.list(kind=0, state=jobs_pb2.JOB_STATE_FAILED, page_size=10, page_token="")
    assert [j.id for j in failed] == [jobs[0].id]


def test_a_forged_page_token_is_an_invalid_argument(make_store: StoreFactory) -> None:
    store = make_store()
    store.create(_job())
    forged = [
        "not-a-token!",
        encode_page_token(10**30, "job_" + "0" * 32),  # beyond SQLite's integers
        encode_page_token(-5, "job_" + "0" * 32),
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
    ]
    for token in forged:
        with pytest.raises(InvalidField, match=r"^page_token: "):
            store.list(kind=0, state=0, page_size=5, page_token=token)


def test_two_store_clients_share_records(make_store: StoreFactory) -> None:
    one, two = make_store(), make_store()
    job = _job()
    one.create(job)
    two.record(_event(job.id, 2, jobs_pb2.JOB_STATE_RUNNING))
    seen = one.get(job.id)
    assert seen is not None
    assert seen.state == jobs_pb2.JOB_STATE_RUNNING


def test_a_redelivered_duplicate_still_raises_the_jobs_attempt(make_store: StoreFactory) -> None:
    store = make_store()
    job = _job()
    store.create(job)
    first = _event(job.id, 3, jobs_pb2.JOB_STATE_RUNNING, attempt=1)
    assert store.record(first) is not None
    # The second delivery repeats seq 2 (lost the first time) and 3: neither is recorded again,
    # but the job now knows a second delivery started; its log has nothing new.
    raised = store.record(_event(job.id, 2, jobs_pb2.JOB_STATE_RUNNING, attempt=2))
    assert raised is not None
    assert raised.job.attempt == 2 and raised.logged is None
    assert store.record(_event(job.id, 3, jobs_pb2.JOB_STATE_RUNNING, attempt=2)) is None
    again = store.get(job.id)
    assert again is not None
    assert again.attempt == 2
    assert again.last_event == first
    assert store.events(job.id, 0) == [job.last_event, first]


def test_the_oldest_queued_job_of_each_kind_is_the_oldest_no_worker_reported_on(
    make_store: StoreFactory,
) -> None:
    one, two = make_store(), make_store()
    assert one.oldest_queued(jobs_pb2.JOB_KIND_TRAIN) is None
    base = 1_700_000_000_000_000_000
    # Recorded out of create-time order, as several gateways may record them.
    later, oldest, middle = (_job(created_ns=base + offset) for offset in (3_000, 1_000, 2_000))
    prediction = _job(kind=jobs_pb2.JOB_KIND_PREDICT, created_ns=base + 500)
    for job in (later, oldest, middle, prediction):
        one.create(job)

    def oldest_train() -> int | None:
        found = two.oldest_queued(jobs_pb2.JOB_KIND_TRAIN)
        return None if found is None else found.ToNanoseconds()

    assert oldest_train() == base + 1_000, "nanoseconds exactly, whichever store answers"
    found = one.oldest_queued(jobs_pb2.JOB_KIND_PREDICT)
    assert found == prediction.create_time, "each kind on its own"
    # A worker started it: no longer waiting.
    one.record(_event(oldest.id, 2, jobs_pb2.JOB_STATE_RUNNING, attempt=1))
    assert oldest_train() == base + 2_000
    two.cancel(middle.id, _event(middle.id, 0, jobs_pb2.JOB_STATE_CANCELLED))
    assert oldest_train() == base + 3_000
    one.record(_event(later.id, 2, jobs_pb2.JOB_STATE_FAILED))
    assert oldest_train() is None
    assert one.oldest_queued(jobs_pb2.JOB_KIND_PREDICT) == prediction.create_time


def _prediction(rows: int) -> jobs_pb2.Job:
    job = _job(kind=jobs_pb2.JOB_KIND_PREDICT)
    job.predict.model_id = "mdl_" + "a" * 32
    for i in range(rows):
        job.predict.rows.add().update({"x": i, "colour": "red"})
    return job


def test_listings_are_summaries_and_get_has_the_whole_job(make_store: StoreFactory) -> None:
    store = make_store()
    job = _prediction(rows=3)
    store.create(job)
    done = _event(job.id, 4, jobs_pb2.JOB_STATE_SUCCEEDED)
    done.predict_result.model_id = job.predict.model_id
    done.predict_result.predictions.add().number_value = 1.5
    done.predict_result.classes.add().string_value = "red"
    done.predict_result.probabilities.add().values.append(1.0)
    recorded = store.record(done)

    (listed,), _ = store.list(kind=0, state=0, page_size=10, page_token="")
    assert recorded is not None
    assert recorded.job == listed
    assert recorded.logged == done, "the logged event is whole: the prediction's results too"
    assert store.events(job.id, 1) == [done]
    assert listed.truncated and listed.row_count == 3
    assert listed.predict.model_id == job.predict.model_id and not listed.predict.rows
    result = listed.last_event.predict_result
    assert result.model_id == job.predict.model_id
    assert not (result.predictions or result.classes or result.probabilities)

    whole = store.get(job.id)
    assert whole is not None and not whole.truncated
    assert whole.predict == job.predict
    assert whole.last_event == done
    assert whole.row_count == 3


def test_finished_jobs_are_deleted_after_the_retention_and_live_ones_kept(
    make_short_lived_store: StoreFactory,
) -> None:
    store = make_short_lived_store()
    done, live = _prediction(rows=2), _job()
    store.create(done)
    store.create(live)
    store.record(_event(done.id, 4, jobs_pb2.JOB_STATE_FAILED))

    wait_until_swept(store, done.id, live.id)
    assert store.events(done.id, 0) == []
    listed, _ = store.list(kind=0, state=0, page_size=10, page_token="")
    assert [j.id for j in listed] == [live.id]
    assert store.get(live.id) is not None


def test_concurrent_gateways_neither_lose_nor_regress_updates(
    make_store: StoreFactory,
) -> None:
    one, two = make_store(), make_store()
    job = _job()
    one.create(job)
    running = jobs_pb2.JOB_STATE_RUNNING

    def send(store: JobStore, seqs: range) -> None:
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
    make_store: StoreFactory,
) -> None:
    one, two = make_store(), make_store()
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
