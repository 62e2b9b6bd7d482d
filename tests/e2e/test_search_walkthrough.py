"""docs/search.md's walkthrough runs as written against a live embedded gateway, and its
scikit-learn reproduction finds the search's best parameters and score."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.walkthroughs import ROOT, environment, run_walkthrough, script


def test_search_walkthrough(embedded_gateway: str, tmp_path: Path) -> None:
    source = script(ROOT / "docs" / "search.md", "search", {"localhost:50051": embedded_gateway})
    env = environment(tmp_path, MLGATE_ADDRESS=embedded_gateway)
    out = run_walkthrough(source, tmp_path, env).stdout
    assert re.search(r"^rank +params +mean +std +fit_seconds +rung +error$", out, re.M), out
    assert re.search(r"^model: +diabetes-tree/\d+ \(mdl_[0-9a-f]{32}\)$", out, re.M), out
    assert out.count("rank,params,mean,std,fit_seconds,rung,error") == 1
    assert re.search(r'^best ridge: \{"alpha":[0-9.e-]+\}$', out, re.M), out
    ours = re.search(r"^best: +max_depth=(\d+) min_samples_leaf=(\d+) \(r2 ([0-9.]+)\)$", out, re.M)
    theirs = re.search(
        r"^scikit-learn: \{'max_depth': (\d+), 'min_samples_leaf': (\d+)\} ([0-9.]+)$", out, re.M
    )
    assert ours and theirs, out
    assert ours.groups() == theirs.groups()
