"""docs/training.md's walkthrough of blanks and identifiers runs as written, against a live
embedded gateway: blanks refused naming the way forward, an id warned, an imputed model that
takes blanks and keys it does not know, and --csv passing the id through (issue 23, 1-3)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from tests.support.walkthroughs import ROOT, environment, run_walkthrough, script

TRAINING = ROOT / "docs" / "training.md"


def test_blanks_walkthrough(embedded_gateway: str, tmp_path: Path) -> None:
    source = script(TRAINING, "blanks", {"localhost:50051": embedded_gateway})
    done = run_walkthrough(source, tmp_path, environment(tmp_path, MLGATE_ADDRESS=embedded_gateway))
    out, err = done.stdout, done.stderr
    assert "columns with missing values cannot be used by random_forest: sqft, district" in err
    assert "warning: feature id has a different value in every row (200 of 200)" in err
    assert "warning: feature listing_note has a different value in every row" in err
    assert re.search(r"^version: +listings/1$", out, re.M), out
    assert re.search(r"^impute: +median: sqft=[0-9.]+, rooms=[0-9.]+, district=", out, re.M), out
    assert re.search(
        r"^features: +sqft \(numeric\), rooms \(integer\), district \(string\), "
        r"garage \(boolean\)$",
        out,
        re.M,
    ), out
    assert len(re.findall(r"^0 +[0-9.]+$", out, re.M)) == 2, out  # both rows predicted
    assert "warning: ignored id: not a feature of this model" in err
    assert "wrote 200 predictions of listings/1 (mdl_" in err
    with (tmp_path / "priced.csv").open(newline="") as handle:
        header, first, *rest = list(csv.reader(handle))
    assert header == ["id", "predict"] and first[0] == "1000" and len(rest) == 199
