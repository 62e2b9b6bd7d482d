"""The README's walkthroughs run as written against a live gateway."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from mlgate.v1 import models_pb2, models_pb2_grpc

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


def test_registry_walkthrough_predicts_through_the_alias(
    embedded_gateway: str, tmp_path: Path
) -> None:
    out = _run(_walkthrough("registry"), embedded_gateway, tmp_path)
    assert "diabetes-rf@production -> diabetes-rf/1" in out
    # Version 1 is the README's forest, so the prediction through the alias is the README's.
    predictions = re.findall(r"^0\s+(\S+)$", out, re.M)
    assert len(predictions) == 2
    assert predictions[0].startswith("208.6") and not predictions[1].startswith("208.6")
    versions = re.findall(r"^([12])\s+(mdl_[0-9a-f]{32})\s+(\S+)", out, re.M)
    assert [(v, a) for v, _, a in versions] == [("2", "-"), ("1", "production")]
    with grpc.insecure_channel(embedded_gateway) as channel:
        stub = models_pb2_grpc.ModelServiceStub(channel)
        model = stub.GetModel(models_pb2.GetModelRequest(model_id="diabetes-rf@production")).model
    assert (model.id, model.version, model.description) == (
        versions[1][1],
        1,
        "the original design's forest",
    )
    exported = (tmp_path / "diabetes-rf.skops").read_bytes()
    assert hashlib.sha256(exported).hexdigest() == model.sha256
    assert (tmp_path / "diabetes-rf.skops.manifest.json").is_file()
