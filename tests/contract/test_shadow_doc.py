"""docs/rollouts.md's shadow walkthrough runs as written against a live embedded gateway: every
prediction is the current version's, and `mlgate models compare` counts the five mirrored."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.walkthroughs import ROOT, environment, run_walkthrough, script

ROLLOUTS = ROOT / "docs" / "rollouts.md"


def test_shadow_walkthrough_answers_from_the_current_version_and_compares(
    embedded_gateway: str, tmp_path: Path
) -> None:
    source = script(ROLLOUTS, "shadow", {"localhost:50051": embedded_gateway})
    out = run_walkthrough(source, tmp_path, environment(tmp_path, MLGATE_ADDRESS=embedded_gateway))
    said = out.stdout
    shown = re.search(r"^diabetes-shadow@production -> diabetes-shadow/(\d+)", said, re.M)
    assert shown and "shadow" in said, said
    predictions = re.findall(r"^0\s+(\S+)$", said, re.M)
    assert len(predictions) == 5 and len(set(predictions)) == 1, said
    assert re.search(
        r"^diabetes-shadow@production: shadow version \d+ \(regression\)", said, re.M
    ), said
    assert re.search(r"^mirrored +5$", said, re.M), said
    assert re.search(r"^dropped +0$", said, re.M), said
    assert re.search(r"^rows compared +5$", said, re.M), said
    diff = re.search(r"^abs diff +mean (\S+),", said, re.M)
    assert diff and float(diff[1]) > 0, said
