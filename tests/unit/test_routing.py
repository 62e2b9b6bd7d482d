"""server.routing: how a weighted alias picks a version, and what SetModelAlias accepts."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from mlgate.errors import InvalidField
from server.jobstore.registry import Route, Target
from server.routing import bucket, check_routes, choose, routed

ROUTES = (Route(3, 90, "mdl_three"), Route(4, 10, "mdl_four"))


def test_a_key_hashes_the_same_everywhere_into_0_to_99() -> None:
    # Pinned to BLAKE2b's digest, never Python's per-process hash(): every gateway agrees.
    digest = hashlib.blake2b(b"user-42", digest_size=8).digest()
    assert bucket("user-42") == int.from_bytes(digest, "big") % 100
    spread = Counter(bucket(f"key-{i}") // 10 for i in range(20_000))
    assert set(spread) == set(range(10))
    assert all(1_800 <= count <= 2_200 for count in spread.values()), spread


def test_routes_split_0_to_99_in_version_order_and_moving_weight_moves_one_range() -> None:
    keys = [f"user-{i}" for i in range(2_000)]
    before = {key: choose(ROUTES, key).version for key in keys}
    assert all(before[key] == (3 if bucket(key) < 90 else 4) for key in keys)
    after = {key: choose((Route(3, 80), Route(4, 20)), key).version for key in keys}
    moved = {key for key in keys if before[key] != after[key]}
    assert moved == {key for key in keys if 80 <= bucket(key) < 90}


def test_without_a_key_versions_are_drawn_by_weight() -> None:
    drawn = Counter(choose(ROUTES).version for _ in range(20_000))
    assert 1_700 <= drawn[4] <= 2_300, drawn


def test_routed_names_the_version_the_alias_and_the_shadow() -> None:
    target = Target("mdl_three", "churn", 3, ROUTES, 5, "mdl_five")
    key = next(f"k{i}" for i in range(1000) if bucket(f"k{i}") >= 90)
    answer = routed(target, "production", key)
    assert (answer.model_id, answer.name, answer.version, answer.alias) == (
        "mdl_four",
        "churn",
        4,
        "production",
    )
    assert (answer.shadow_model_id, answer.shadow_version) == ("mdl_five", 5)
    plain = routed(Target("mdl_one", "churn", 1), "")
    assert (plain.model_id, plain.version, plain.alias, plain.shadow_version) == (
        "mdl_one",
        1,
        "",
        0,
    )


def test_check_routes_orders_them_by_version() -> None:
    assert check_routes(0, [(4, 10), (3, 90)], 0) == (Route(3, 90), Route(4, 10))
    assert check_routes(2, [], 5) == ()


@pytest.mark.parametrize(
    ("version", "routes", "shadow", "field"),
    [
        (1, [(1, 50), (2, 50)], 0, "routes"),
        (0, [], 0, "version"),
        (0, [(1, 50), (2, 49)], 0, "routes"),
        (0, [(1, 50), (2, 50), (2, 0)], 0, "routes[2].weight"),
        (0, [(1, 50), (1, 50)], 0, "routes[1].version"),
        (0, [(1, 50), (2, 50)], 1, "shadow_version"),
        (0, [(1, 50), (2, 50)], -1, "shadow_version"),
    ],
)
def test_check_routes_names_the_field_it_refuses(
    version: int, routes: list[tuple[int, int]], shadow: int, field: str
) -> None:
    with pytest.raises(InvalidField) as refused:
        check_routes(version, routes, shadow)
    assert refused.value.field == field
