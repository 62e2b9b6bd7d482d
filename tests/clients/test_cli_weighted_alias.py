"""Weighted aliases through the CLI and the client library, in process against the real embedded
system: `mlgate models alias NAME ALIAS 1:90 2:10 [--shadow 3]`, showing an alias, usage errors,
`mlgate predict --routing-key`, and `set_alias(routes=..., shadow_version=...)`."""

from __future__ import annotations

import json
import re

from mlgate_client import MLGateClient
from server.routing import bucket
from tests.support.cli_runner import Run, cli_json
from tests.support.samples import DIABETES_FEATURES, DOC_ROW

FEATURES = ",".join(DIABETES_FEATURES)
ROW = json.dumps(DOC_ROW)


def _versions(mlgate: Run, count: int) -> list[str]:
    args = ["train", "diabetes", "--target", "target", "--features", FEATURES, "--name", "rf"]
    return [
        str(cli_json(mlgate, *args, "--param", "n_estimators=10")["model_id"]) for _ in range(count)
    ]


def test_the_cli_sets_shows_and_follows_a_weighted_alias(mlgate: Run) -> None:
    ids = _versions(mlgate, 3)
    status, out, err = mlgate("models", "alias", "rf", "canary", "2:10", "1:90", "--shadow", "3")
    assert status == 0, err
    assert out.strip() == "rf@canary -> rf/1 90%, rf/2 10%, shadow rf/3"
    status, out, err = mlgate("models", "alias", "rf", "canary")
    assert (status, out.strip()) == (0, "rf@canary -> rf/1 90%, rf/2 10%, shadow rf/3"), err
    shown = cli_json(mlgate, "models", "alias", "rf", "canary")
    assert (shown["routes"], shown["shadow_version"], shown["version"]) == (
        [[1, 90], [2, 10]],
        3,
        1,
    )
    status, out, _ = mlgate("models", "get", "rf@canary")
    assert re.search(r"^through: +rf@canary -> rf/1 90%, rf/2 10%, shadow rf/3$", out, re.M), out

    key = next(f"user-{i}" for i in range(1000) if bucket(f"user-{i}") >= 90)
    for _ in range(3):
        predicted = cli_json(mlgate, "predict", "rf@canary", "--row", ROW, "--routing-key", key)
        assert (predicted["model_name"], predicted["model_version"], predicted["alias"]) == (
            "rf",
            2,
            "canary",
        )
        assert predicted["model_id"] == ids[1]
    status, _, err = mlgate("predict", "rf@canary", "--row", ROW, "--routing-key", key)
    assert status == 0 and "answered by rf/2 through @canary" in err, err

    moved = cli_json(mlgate, "models", "alias", "rf", "canary", "3")
    assert (moved["version"], moved["previous_version"], moved["routes"]) == (3, 1, [])


def test_the_cli_refuses_malformed_routes_and_the_gateway_names_the_field(mlgate: Run) -> None:
    _versions(mlgate, 2)
    status, _, err = mlgate("models", "alias", "rf", "canary", "1:90", "2")
    assert status == 2 and "VERSION:WEIGHT for each version" in err, err
    status, _, err = mlgate("models", "alias", "rf", "canary", "1:ninety", "2:10")
    assert status == 2 and "WEIGHT must be a whole number, not 'ninety'" in err, err
    status, _, err = mlgate("models", "alias", "rf", "canary", "1:90", "--delete")
    assert status == 2 and "not both" in err, err
    status, _, err = mlgate("models", "alias", "rf", "canary", "1:90", "2:20")
    assert status == 2 and "routes: weights must sum to 100, not 110" in err, err
    status, _, err = mlgate("models", "alias", "rf", "canary", "1:90", "2:10", "--shadow", "2")
    assert status == 2 and "shadow_version: version 2 is routes[1]" in err, err


def test_the_client_library_sets_routes_and_predicts_with_a_key(client: MLGateClient) -> None:
    trained = [
        client.train(
            "diabetes", "target", DIABETES_FEATURES, model_name="lib", params={"n_estimators": 10}
        )
        for _ in range(2)
    ]
    alias = client.set_alias("lib", "canary", routes={1: 50, 2: 50}, shadow_version=0)
    assert (alias.routes, alias.shadow_version, alias.version) == (((1, 50), (2, 50)), 0, 1)
    key = "account-7"
    number = 1 if bucket(key) < 50 else 2
    for _ in range(3):
        result = client.predict("lib@canary", [DOC_ROW], routing_key=key)
        assert (result.model_version, result.model_id) == (number, trained[number - 1].model_id)
    seen = client.get_model("lib@canary").through_alias
    assert seen is not None and seen.describe() == "lib@canary -> lib/1 50%, lib/2 50%"
