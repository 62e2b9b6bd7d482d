"""The tables the gateway reads instead of importing scikit-learn are what scikit-learn says now."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.tables import TABLES, render


@pytest.mark.parametrize("path", list(TABLES), ids=lambda path: path.name)
def test_committed_table_equals_a_fresh_one(path: Path) -> None:
    assert path.read_text(encoding="utf-8") == render(TABLES[path]()), (
        f"{path.name} differs from what the installed scikit-learn says: run `make tables`, "
        "review the diff and commit it"
    )
