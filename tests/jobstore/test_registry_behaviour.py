"""The model registry suite: written once against the contract, run against every job store."""

from __future__ import annotations

import threading

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from mlgate.errors import FailedPrecondition, InvalidArgument, NotFound
from mlgate.ids import model_id_for_job, new_job_id
from mlgate.refs import ModelRef, parse_ref
from mlgate.v1 import jobs_pb2
from server.jobstore.base import JobStore
from tests.support.jobstores import StoreFactory


def _queued(store: JobStore, name: str = "") -> jobs_pb2.Job:
    job_id = new_job_id()
    stamp = Timestamp()
    stamp.GetCurrentTime()
    job = jobs_pb2.Job(id=job_id, kind=jobs_pb2.JOB_KIND_TRAIN, state=jobs_pb2.JOB_STATE_QUEUED)
    job.create_time.CopyFrom(stamp)
    job.train.dataset_id = "diabetes"
    job.train.model_name = name
    job.last_event.CopyFrom(
        jobs_pb2.JobEvent(job_id=job_id, seq=1, state=jobs_pb2.JOB_STATE_QUEUED, time=stamp)
    )
    store.create(job)
    return job


def _succeeded(job: jobs_pb2.Job) -> jobs_pb2.JobEvent:
    done = jobs_pb2.JobEvent(job_id=job.id, seq=6, state=jobs_pb2.JOB_STATE_SUCCEEDED)
    done.train_result.model_id = model_id_for_job(job.id)
    return done


def _train(store: JobStore, name: str) -> str:
    """A named training job that succeeds; its model id."""
    job = _queued(store, name)
    assert store.record(_succeeded(job)) is not None
    return model_id_for_job(job.id)


def _resolve(store: JobStore, text: str) -> str:
    return store.registry.resolve(parse_ref(text))


def test_a_named_job_that_succeeds_registers_the_next_version(make_store: StoreFactory) -> None:
    store = make_store()
    first = _queued(store, "forest")
    recorded = store.record(_succeeded(first))
    assert recorded is not None
    assert recorded.job.last_event.train_result.model_name == "forest"
    assert recorded.job.last_event.train_result.model_version == 1
    # The recorded event, which Train and WatchJob stream, carries the version too.
    assert store.events(first.id, 5)[0].train_result.model_version == 1
    assert recorded.logged == store.events(first.id, 5)[0]
    assert store.record(_succeeded(first)) is None, "a redelivered event allocates nothing"

    failed = _queued(store, "forest")
    store.record(jobs_pb2.JobEvent(job_id=failed.id, seq=6, state=jobs_pb2.JOB_STATE_FAILED))
    unnamed = _queued(store)
    assert store.record(_succeeded(unnamed)) is not None
    second = _train(store, "forest")

    assert [(e.version, e.model_id) for e in store.registry.versions("forest")] == [
        (2, second),
        (1, model_id_for_job(first.id)),
    ]
    assert store.registry.entry(model_id_for_job(unnamed.id)).name == ""
    assert store.registry.versions("nothing") == []


def test_concurrent_successes_on_two_store_clients_get_consecutive_versions(
    make_store: StoreFactory,
) -> None:
    stores = [make_store(), make_store()]  # as two gateways on one job store
    jobs = [_queued(stores[0], "shared") for _ in range(24)]
    start = threading.Barrier(6)

    def record(part: list[jobs_pb2.Job], store: JobStore) -> None:
        start.wait()
        for job in part:
            assert store.record(_succeeded(job)) is not None

    threads = [threading.Thread(target=record, args=(jobs[i::6], stores[i % 2])) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    versions = stores[1].registry.versions("shared")
    assert sorted(e.version for e in versions) == list(range(1, 25))
    assert {e.model_id for e in versions} == {model_id_for_job(j.id) for j in jobs}
    for job in jobs:
        final = stores[0].get(job.id)
        assert final is not None
        entry = stores[0].registry.entry(model_id_for_job(job.id))
        assert final.last_event.train_result.model_version == entry.version


def test_references_resolve_to_the_latest_a_version_or_an_alias(make_store: StoreFactory) -> None:
    store = make_store()
    one, two = _train(store, "rf"), _train(store, "rf")
    store.registry.set_alias("rf", "production", 1)
    assert _resolve(store, "rf") == two
    assert _resolve(store, "rf/1") == one
    assert _resolve(store, "rf/2") == two
    assert _resolve(store, "rf@production") == one
    assert _resolve(store, one) == one, "an id needs no registry"

    with pytest.raises(NotFound, match="no model is named 'other'"):
        _resolve(store, "other")
    with pytest.raises(NotFound, match="no model is named 'other'"):
        _resolve(store, "other@production")
    with pytest.raises(NotFound, match="'rf' has no version 3"):
        _resolve(store, "rf/3")
    with pytest.raises(NotFound, match="'rf' has no alias 'staging'"):
        _resolve(store, "rf@staging")


def test_an_alias_is_set_moved_and_deleted(make_store: StoreFactory) -> None:
    store, other = make_store(), make_store()
    one, two = _train(store, "rf"), _train(store, "rf")
    created = store.registry.set_alias("rf", "production", 1)
    assert (created.version, created.model_id, created.previous_version) == (1, one, 0)
    assert other.registry.entry(one).aliases == ("production",)

    moved = other.registry.set_alias("rf", "production", 2)
    assert (moved.model_id, moved.previous_version) == (two, 1)
    assert _resolve(store, "rf@production") == two
    assert store.registry.entry(one).aliases == ()
    assert store.registry.entry(two).aliases == ("production",)

    with pytest.raises(NotFound, match="no version 9"):
        store.registry.set_alias("rf", "production", 9)
    with pytest.raises(NotFound, match="no model is named"):
        store.registry.set_alias("nothing", "production", 1)
    assert _resolve(store, "rf@production") == two, "a refused move changes nothing"

    store.registry.delete_alias("rf", "production")
    with pytest.raises(NotFound, match="no alias 'production'"):
        _resolve(other, "rf@production")
    with pytest.raises(NotFound, match="no alias 'production'"):
        store.registry.delete_alias("rf", "production")


def test_forgetting_an_aliased_version_needs_force_and_numbers_are_never_reused(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    one, two, three = (_train(store, "rf") for _ in range(3))
    store.registry.set_alias("rf", "production", 3)
    store.registry.set_alias("rf", "canary", 3)

    with pytest.raises(FailedPrecondition, match=r"rf@canary, rf@production"):
        store.registry.forget(three, force=False)
    assert _resolve(store, "rf@production") == three, "a refused delete changes nothing"

    forgotten = store.registry.forget(three, force=True)
    assert (forgotten.version, forgotten.aliases) == (3, ("canary", "production"))
    with pytest.raises(NotFound, match="no alias 'production'"):
        _resolve(store, "rf@production")
    assert _resolve(store, "rf") == two, "the latest is now the highest version left"

    assert store.registry.forget(one, force=False).version == 1
    four = _train(store, "rf")
    assert store.registry.entry(four).version == 4, "version 3 is never given again"
    assert [e.version for e in store.registry.versions("rf")] == [4, 2]
    with pytest.raises(NotFound, match="no version 3"):
        _resolve(store, "rf/3")

    store.registry.forget(two, force=False)
    store.registry.forget(four, force=False)
    with pytest.raises(NotFound, match="'rf' has no versions left"):
        _resolve(store, "rf")
    assert store.registry.forget(four, force=False) == store.registry.entry(four), (
        "forgetting twice is harmless"
    )


def test_descriptions_and_tags_are_updated_and_checked(make_store: StoreFactory) -> None:
    store = make_store()
    named = _train(store, "rf")
    updated = store.registry.update(named, "first forest", {"team": "risk", "stage": "dev"}, [])
    assert (updated.name, updated.version) == ("rf", 1)
    assert updated.tags == {"team": "risk", "stage": "dev"}
    again = store.registry.update(named, None, {"stage": "prod"}, ["team"])
    assert (again.description, again.tags) == ("first forest", {"stage": "prod"})
    assert make_store().registry.entry(named) == again

    unnamed = model_id_for_job(new_job_id())
    assert store.registry.update(unnamed, "no name", {}, []).description == "no name"

    with pytest.raises(InvalidArgument, match="set_tags"):
        store.registry.update(named, None, {"Bad Key": "x"}, [])
    with pytest.raises(InvalidArgument, match="at most 64 tags"):
        store.registry.update(named, None, {f"k{i}": "v" for i in range(64)}, [])
    assert store.registry.entry(named) == again, "a refused update changes nothing"


def test_entries_come_back_in_bulk_for_listing(make_store: StoreFactory) -> None:
    store = make_store()
    ids = [_train(store, "a"), _train(store, "b"), model_id_for_job(new_job_id())]
    store.registry.set_alias("b", "production", 1)
    found = store.registry.entries(ids)
    assert [(found[i].name, found[i].version, found[i].aliases) for i in ids] == [
        ("a", 1, ()),
        ("b", 1, ("production",)),
        ("", 0, ()),
    ]
    assert store.registry.entries([]) == {}
    assert store.registry.resolve(ModelRef(model_id=ids[2])) == ids[2]
