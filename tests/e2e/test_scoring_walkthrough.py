"""docs/scoring.md's walkthrough runs as written against a live embedded gateway: the scored
datasets are there with the documented columns, and the download reads back."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.walkthroughs import ROOT, environment, run_walkthrough, script


def test_scoring_walkthrough(embedded_gateway: str, tmp_path: Path) -> None:
    source = script(ROOT / "docs" / "scoring.md", "scoring", {"localhost:50051": embedded_gateway})
    env = environment(tmp_path, MLGATE_ADDRESS=embedded_gateway)
    done = run_walkthrough(source, tmp_path, env)
    out = done.stdout
    assert re.search(r"^dataset: +diabetes-scored \(csv, 442 rows\)$", out, re.M), out
    assert re.search(r"^model: +diabetes-scorer/\d+ \(mdl_[0-9a-f]{32}\)$", out, re.M), out
    assert re.search(r"^columns: +target, prediction$", out, re.M), out
    iris = (
        "sepal length \\(cm\\), sepal width \\(cm\\), petal length \\(cm\\), petal width \\(cm\\)"
    )
    assert re.search(
        rf"^columns: +{iris}, target, prediction, proba_0, proba_1, proba_2$", out, re.M
    ), out
    assert re.search(r"^dataset: +iris-scored \(parquet, 150 rows\)$", out, re.M), out
    assert re.search(r"^target,prediction$", out, re.M), out
    assert "scored: 442 rows; target, prediction" in out
    # Progress as shards finish, on stderr.
    assert re.search(r"^mlgate: \d+ of 442 rows scored \(\d of 5 shards\)$", done.stderr, re.M)
