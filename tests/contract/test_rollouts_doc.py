"""docs/rollouts.md's walkthroughs run as written against a live embedded gateway."""

from __future__ import annotations

import json
import re
from pathlib import Path

from server.routing import bucket
from tests.support.walkthroughs import ROOT, environment, run_walkthrough, script

ROLLOUTS = ROOT / "docs" / "rollouts.md"


def _run(name: str, address: str, cwd: Path) -> str:
    source = script(ROLLOUTS, name, {"localhost:50051": address})
    return run_walkthrough(source, cwd, environment(cwd, MLGATE_ADDRESS=address)).stdout


def test_canary_walkthrough_draws_by_weight_and_keeps_a_key_on_one_version(
    embedded_gateway: str, tmp_path: Path
) -> None:
    out = _run("canary", embedded_gateway, tmp_path)
    shown = re.search(r"^churn-rf@production -> churn-rf/(\d+) 90%, churn-rf/(\d+) 10%$", out, re.M)
    assert shown, out
    stable, candidate = int(shown[1]), int(shown[2])
    counted = {int(v): int(n) for n, v in re.findall(r"^ *(\d+) (\d+)$", out, re.M)}
    assert sum(counted.values()) == 40 and counted.get(stable, 0) >= 24, counted
    assert set(counted) <= {stable, candidate}, counted

    keyed = [json.loads(line) for line in re.findall(r'^\{"model_name".*\}$', out, re.M)]
    want = stable if bucket("user-42") < 90 else candidate
    assert (
        keyed[:3] == [{"model_name": "churn-rf", "model_version": want, "alias": "production"}] * 3
    ), keyed
    # ModelInfer's answer: the alias as named, and the same version as a string.
    assert keyed[3] == {"model_name": "churn-rf@production", "model_version": str(want)}, keyed
    assert f"churn-rf@production -> churn-rf/{stable} 50%, churn-rf/{candidate} 50%" in out
    assert re.search(
        rf"^churn-rf@production -> churn-rf/{candidate} \(mdl_[0-9a-f]{{32}}\)", out, re.M
    )
