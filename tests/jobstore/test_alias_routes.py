"""Weighted aliases and shadows in the registry suite: run against every job store."""

from __future__ import annotations

import threading

import pytest

from mlgate.errors import FailedPrecondition, NotFound
from mlgate.ids import model_id_for_job
from mlgate.refs import ModelRef
from server.jobstore.base import JobStore
from server.jobstore.registry import Route
from tests.support.jobstores import StoreFactory, queued_training, success


def _versions(store: JobStore, name: str, count: int) -> list[str]:
    """``count`` versions of ``name``, by named training jobs that succeed; their model ids."""
    made = []
    for _ in range(count):
        job = queued_training(store, name)
        assert store.record(success(job)) is not None
        made.append(model_id_for_job(job.id))
    return made


def test_an_alias_holds_weighted_routes_and_a_shadow_in_one_read(make_store: StoreFactory) -> None:
    store = make_store()
    ids = _versions(store, "churn", 4)
    change = store.registry.set_alias(
        "churn", "production", 0, [Route(2, 10), Route(1, 90)], shadow_version=4
    )
    assert (change.version, change.model_id, change.previous_version) == (1, ids[0], 0)
    assert change.routes == (Route(1, 90, ids[0]), Route(2, 10, ids[1]))
    assert (change.shadow_version, change.shadow_model_id) == (4, ids[3])

    # Another client of the same store (another gateway) sees all of it at once.
    target = make_store().registry.target(ModelRef(name="churn", alias="production"))
    assert (target.model_id, target.name, target.version) == (ids[0], "churn", 1)
    assert target.routes == change.routes
    assert (target.shadow_version, target.shadow_model_id) == (4, ids[3])
    assert store.registry.resolve(ModelRef(name="churn", alias="production")) == ids[0]
    latest = store.registry.target(ModelRef(name="churn"))
    assert (latest.model_id, latest.version, latest.routes) == (ids[3], 4, ())

    # Every version the alias uses lists it; the one it does not use, not.
    found = store.registry.entries(ids)
    assert [found[model_id].aliases for model_id in ids] == [
        ("production",),
        ("production",),
        (),
        ("production",),
    ]

    # Back to one version: the routes and the shadow go with the same write.
    moved = store.registry.set_alias("churn", "production", 3)
    assert (moved.version, moved.previous_version, moved.routes, moved.shadow_version) == (
        3,
        1,
        (),
        0,
    )
    target = store.registry.target(ModelRef(name="churn", alias="production"))
    assert (target.model_id, target.routes, target.shadow_version) == (ids[2], (), 0)
    assert store.registry.entry(ids[1]).aliases == ()


def test_an_alias_with_an_unknown_version_changes_nothing(make_store: StoreFactory) -> None:
    store = make_store()
    ids = _versions(store, "churn", 2)
    store.registry.set_alias("churn", "production", 1)
    with pytest.raises(NotFound, match="has no version 9"):
        store.registry.set_alias("churn", "production", 0, [Route(1, 50), Route(9, 50)])
    with pytest.raises(NotFound, match="has no version 7"):
        store.registry.set_alias("churn", "production", 2, shadow_version=7)
    target = store.registry.target(ModelRef(name="churn", alias="production"))
    assert (target.model_id, target.routes, target.shadow_version) == (ids[0], (), 0)


@pytest.mark.parametrize("used_as", ["route", "shadow"])
def test_deleting_a_routed_or_shadowed_version_needs_force(
    make_store: StoreFactory, used_as: str
) -> None:
    store = make_store()
    ids = _versions(store, "churn", 3)
    if used_as == "route":
        store.registry.set_alias("churn", "canary", 0, [Route(1, 90), Route(2, 10)])
    else:
        store.registry.set_alias("churn", "canary", 1, shadow_version=2)
    store.registry.set_alias("churn", "stable", 3)
    with pytest.raises(FailedPrecondition, match="churn@canary"):
        store.registry.forget(ids[1], force=False)
    assert store.registry.target(ModelRef(name="churn", alias="canary")).model_id == ids[0]

    removed = store.registry.forget(ids[1], force=True)
    assert removed.aliases == ("canary",)
    with pytest.raises(NotFound, match="no alias 'canary'"):
        store.registry.target(ModelRef(name="churn", alias="canary"))
    assert store.registry.resolve(ModelRef(name="churn", alias="stable")) == ids[2]
    assert store.registry.entry(ids[0]).aliases == ()


def test_readers_on_another_client_see_the_old_routes_or_the_new_never_a_mix(
    make_store: StoreFactory,
) -> None:
    writer, reader = make_store(), make_store()
    _versions(writer, "churn", 3)
    old = [Route(1, 90), Route(2, 10)]
    new = [Route(2, 20), Route(3, 80)]
    writer.registry.set_alias("churn", "production", 0, old, shadow_version=3)
    shapes = {
        ((1, 90), (2, 10), 3),
        ((2, 20), (3, 80), 1),
    }
    seen: set[tuple[object, ...]] = set()
    done = threading.Event()

    def read() -> None:
        ref = ModelRef(name="churn", alias="production")
        while not done.is_set():
            target = reader.registry.target(ref)
            seen.add((*((r.version, r.weight) for r in target.routes), target.shadow_version))

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for i in range(60):
            if i % 2:
                writer.registry.set_alias("churn", "production", 0, old, shadow_version=3)
            else:
                writer.registry.set_alias("churn", "production", 0, new, shadow_version=1)
    finally:
        done.set()
        thread.join()
    assert seen and seen <= shapes, seen - shapes
