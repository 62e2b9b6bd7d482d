"""The README's walkthroughs run as written against a live gateway."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _walkthrough(name: str) -> str:
    text = README.read_text()
    match = re.search(
        rf"<!-- walkthrough:{name} -->\s*```bash\n(.*?)```\s*<!-- /walkthrough -->", text, re.S
    )
    assert match, f"README has no {name} walkthrough"
    return match.group(1)


def _run(script: str, address: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLGATE_ADDRESS": address,
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.replace("localhost:50051", address)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("name", ["grpcurl", "cli"])
def test_walkthrough_trains_then_predicts(name: str, embedded_gateway: str, tmp_path: Path) -> None:
    out = _run(_walkthrough(name), embedded_gateway, tmp_path)
    assert re.search(r"mdl_[0-9a-f]{32}", out)
    assert "rmse" in out
    # The README's patient, predicted by the README's forest.
    assert "208.6" in out
