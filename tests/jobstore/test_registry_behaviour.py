"""The model registry suite: written once against the contract, run against every job store."""

from __future__ import annotations

import threading
import time

import pytest

from mlgate.errors import FailedPrecondition, InvalidField, NotFound
from mlgate.ids import model_id_for_job, new_job_id
from mlgate.refs import ModelRef, parse_ref
from mlgate.v1 import jobs_pb2
from server.jobstore.base import JobStore
from server.jobstore.registry import RegistryEntry
from tests.support.jobstores import StoreFactory, queued_training, success


def _train(store: JobStore, name: str) -> str:
    """A named training job that succeeds; its model id."""
    job = queued_training(store, name)
    assert store.record(success(job)) is not None
    return model_id_for_job(job.id)


def _resolve(store: JobStore, text: str) -> str:
    return store.registry.resolve(parse_ref(text))


def test_a_named_job_recorded_with_others_registers_its_version_once(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    named, unnamed = queued_training(store, "forest"), queued_training(store)
    results = store.record_all([success(named), success(unnamed), success(named)])
    first = results[0]
    assert first is not None and first.logged is not None
    assert first.logged.train_result.model_version == 1
    assert results[1] is not None and results[2] is None
    assert _resolve(store, "forest") == model_id_for_job(named.id)


def test_a_named_job_that_succeeds_registers_the_next_version(make_store: StoreFactory) -> None:
    store = make_store()
    first = queued_training(store, "forest")
    recorded = store.record(success(first))
    assert recorded is not None
    assert recorded.job.last_event.train_result.model_name == "forest"
    assert recorded.job.last_event.train_result.model_version == 1
    # The recorded event, which Train and WatchJob stream, carries the version too.
    assert store.events(first.id, 5)[0].train_result.model_version == 1
    assert recorded.logged == store.events(first.id, 5)[0]
    assert store.record(success(first)) is None, "a redelivered event allocates nothing"

    failed = queued_training(store, "forest")
    store.record(jobs_pb2.JobEvent(job_id=failed.id, seq=6, state=jobs_pb2.JOB_STATE_FAILED))
    unnamed = queued_training(store)
    assert store.record(success(unnamed)) is not None
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
    jobs = [queued_training(stores[0], "shared") for _ in range(24)]
    start = threading.Barrier(6)

    def record(part: list[jobs_pb2.Job], store: JobStore) -> None:
        start.wait()
        for job in part:
            assert store.record(success(job)) is not None

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
    with pytest.raises(NotFound, match=r"'rf' has no versions \(none registered yet, or all"):
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

    with pytest.raises(InvalidField, match="set_tags"):
        store.registry.update(named, None, {"Bad Key": "x"}, [])
    with pytest.raises(InvalidField, match="at most 64 tags"):
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


def _made_by(store: JobStore, owner: str, name: str = "", at_ns: int = 0) -> str:
    """A training job of ``owner``'s that succeeds (at ``at_ns``); its model id."""
    job = queued_training(store, name, owner)
    assert store.record(success(job, at_ns)) is not None
    return model_id_for_job(job.id)


def _listed(store: JobStore, size: int) -> list[RegistryEntry]:
    """The whole index, page after page of ``size``."""
    seen: list[RegistryEntry] = []
    before = None
    while page := store.registry.page(size, before):
        seen += page
        before = (page[-1].created_ns, page[-1].model_id)
    return seen


def test_every_model_a_job_makes_is_indexed_with_its_owner_newest_first(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    base = time.time_ns()
    made = [
        _made_by(store, "alice" if i % 2 else "bob", "rf" if i % 3 == 0 else "", base + i * 1000)
        for i in range(7)
    ]
    listed = _listed(make_store(), 3)
    assert [e.model_id for e in listed] == made[::-1]
    assert [e.owner for e in listed] == ["bob", "alice"] * 3 + ["bob"]
    assert [e.created_ns for e in listed] == [base + i * 1000 for i in reversed(range(7))]
    assert [(e.name, e.version) for e in listed if e.name] == [("rf", 3), ("rf", 2), ("rf", 1)]
    assert store.registry.entry(made[1]).owner == "alice"

    store.registry.forget(made[3], force=False)
    store.registry.update(model_id_for_job(new_job_id()), "metadata of no model here", {}, [])
    assert [e.model_id for e in store.registry.page(10, None)] == [
        m for m in made[::-1] if m != made[3]
    ], "a forgotten model leaves the index; metadata alone does not put one in it"


def test_a_name_belongs_to_whoever_claimed_it_first(make_store: StoreFactory) -> None:
    stores = [make_store(), make_store()]  # as two gateways on one job store
    start = threading.Barrier(8)
    holders: list[str] = []

    def claim(i: int) -> None:
        start.wait()
        holders.append(stores[i % 2].registry.claim_name("contested", f"token{i}"))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (winner,) = set(holders)
    assert winner in {f"token{i}" for i in range(8)}
    store = stores[0]
    with pytest.raises(NotFound, match=r"'contested' has no versions \(none registered yet"):
        _resolve(store, "contested")
    first = _made_by(store, winner, "contested")
    assert store.registry.entry(first).version == 1, "a claim takes no version number"
    assert store.registry.claim_name("contested", "token9") == winner


def test_a_name_registered_without_a_claim_belongs_to_its_first_versions_owner(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    _made_by(store, "alice", "forest")
    _made_by(store, "ops", "forest")
    assert store.registry.claim_name("forest", "bob") == "alice"
    _made_by(store, "", "open")  # trained through a gateway without tokens
    assert store.registry.claim_name("open", "bob") == "", "nobody's: admin only"


def test_adoption_indexes_the_stored_models_the_index_lacks(make_store: StoreFactory) -> None:
    store = make_store()
    base = time.time_ns()
    assert not store.registry.adopted()
    indexed = _made_by(store, "alice", at_ns=base + 5000)
    described = model_id_for_job(new_job_id())
    store.registry.update(described, "described before the index", {}, [])
    older = model_id_for_job(new_job_id())
    store.registry.adopt([(indexed, base), (described, base + 1000), (older, base + 2000)])
    assert make_store().registry.adopted()
    assert [(e.model_id, e.owner, e.created_ns) for e in _listed(store, 2)] == [
        (indexed, "alice", base + 5000),
        (older, "", base + 2000),
        (described, "", base + 1000),
    ]
    assert store.registry.entry(described).description == "described before the index"

    # A model stored and adopted before its job was recorded SUCCEEDED: the job's entry wins.
    late = queued_training(store, "", "carol")
    store.registry.adopt([(model_id_for_job(late.id), base + 3000)])
    store.record(success(late, base + 9000))
    listed = _listed(store, 10)
    assert [(e.model_id, e.owner) for e in listed[:1]] == [(model_id_for_job(late.id), "carol")]
    assert len(listed) == 4, "listed once"
