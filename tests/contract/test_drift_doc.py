"""docs/rollouts.md's input drift walkthrough runs as written against a live embedded gateway,
and says what the docs say it says."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.support.walkthroughs import ROOT, environment, run_walkthrough, script

ROLLOUTS = ROOT / "docs" / "rollouts.md"


def test_drift_walkthrough_flags_the_shifted_feature_alone(
    embedded_gateway: str, tmp_path: Path
) -> None:
    source = script(ROLLOUTS, "drift", {"localhost:50051": embedded_gateway})
    env = environment(tmp_path, MLGATE_ADDRESS=embedded_gateway)
    out = run_walkthrough(source, tmp_path, env).stdout
    lines = out.splitlines()

    reference = json.loads(next(line for line in lines if line.startswith('{"edges"')))
    assert len(reference["edges"]) == 9 and len(reference["shares"]) == 10
    assert abs(sum(reference["shares"]) - 1) < 1e-9

    assert re.search(
        r"^drift-rf/\d+ \(mdl_[0-9a-f]{32}\): 1,000 rows in the window, 1,500 served", out, re.M
    ), out
    table = {
        match[1]: (float(match[2]), match[3])
        for match in re.finditer(r"^(\w+) +(\d+\.\d{3})  (ok|moderate|major)", out, re.M)
    }
    assert set(table) == {"age", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"}, out
    assert table["bmi"][0] > 0.25 and table["bmi"][1] == "major"
    assert re.search(r"^bmi +\d+\.\d{3}  major !!$", out, re.M)
    assert all(psi < 0.1 and level == "ok" for name, (psi, level) in table.items() if name != "bmi")
    # The JSON's features that are not ok: bmi alone.
    assert lines[-1] == "bmi" and "bmi" not in lines[-2], out
