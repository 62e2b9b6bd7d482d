"""The gateway routes jobs: importing it loads neither the workers nor any numerical library."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("workers", "sklearn", "scipy", "pandas", "numpy", "joblib", "skops", "pyarrow")


@pytest.mark.parametrize("module", ["server.app", "server.main"])
def test_importing_the_gateway_loads_nothing_heavy(module: str) -> None:
    # A fresh interpreter: this test process has long since imported all of them.
    script = (
        f"import json, sys; import {module}; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", script], check=True, capture_output=True, text=True
        ).stdout
    )
    assert [name for name in HEAVY if name in loaded] == []
