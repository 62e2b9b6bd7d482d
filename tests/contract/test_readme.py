"""The README's walkthroughs run as written against a live gateway."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from mlgate.v1 import models_pb2, models_pb2_grpc
from tests.support.fresh import free_port

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


def test_inference_walkthrough_with_grpcurl_the_cli_and_tritonclient(
    embedded_gateway: str, tmp_path: Path
) -> None:
    out = _run(_walkthrough("inference"), embedded_gateway, tmp_path)
    assert "rpc ModelInfer ( .inference.ModelInferRequest ) returns" in out
    assert '"name": "s6"' in out  # ModelMetadata lists the features
    # The README's patient: scikit-learn's float64, in full, from grpcurl and from tritonclient.
    assert re.search(r'"fp64_contents": \[\s*208\.6445780005619\s*\]', out)
    header, first, second = (tmp_path / "predictions.csv").read_text().splitlines()
    assert header == "predict"
    assert first == "208.6445780005619" and second != first
    assert "[208.644578]" in out  # numpy prints 8 significant digits


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
    exported = (tmp_path / "diabetes-rf.model").read_bytes()
    assert hashlib.sha256(exported).hexdigest() == model.sha256
    assert (tmp_path / "diabetes-rf.model.manifest.json").is_file()


def _run_with_servers(script: str, cwd: Path, **env: str) -> tuple[int, str, str]:
    """Run a walkthrough that starts servers in the background; they are stopped after it. Its
    exit code, stdout and stderr. The environment is the caller's without mlgate's variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLGATE_", "OTEL_"))}
    clean["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{clean.get('PATH', '')}"
    out, err = cwd / "stdout", cwd / "stderr"
    # Files, not pipes: the gateway the walkthrough starts in the background outlives the script.
    with out.open("w") as stdout, err.open("w") as stderr:
        shell = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=cwd,
            env={**clean, **env},
            stdout=stdout,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
        try:
            code = shell.wait(timeout=300)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(shell.pid, signal.SIGTERM)
    return code, out.read_text(), err.read_text()


def test_security_walkthrough_runs_with_mtls_tokens_and_a_rotation(tmp_path: Path) -> None:
    port = free_port()
    script = _walkthrough("security").replace("50051", str(port))
    code, said, logged = _run_with_servers(script, tmp_path)
    assert code == 0, said + logged
    assert '"status": "SERVING"' in said
    assert re.search(r'"model_id": "mdl_[0-9a-f]{32}"', said)
    assert "refused, as it should be" in said
    assert "PERMISSION_DENIED: mlgate.v1.ModelService/DeleteModel needs the admin role" in logged
    assert "the old token is refused" in said and "UNAUTHENTICATED" in logged
    # The new token lists alice's training job; the file never held a token.
    assert re.search(r"job_[0-9a-f]{32}\s+train\s+succeeded", said)
    lines = (tmp_path / "tokens.txt").read_text().splitlines()
    assert [line.split()[1:] for line in lines] == [["read", "dashboard"], ["train", "alice"]]
    assert "mlg_" not in "\n".join(lines) and "mlg_" not in logged


def test_operations_walkthrough_shows_status_metrics_and_json_logs(tmp_path: Path) -> None:
    port, metrics = free_port(), free_port()
    script = _walkthrough("operations").replace("50051", str(port)).replace("9100", str(metrics))
    code, said, logged = _run_with_servers(script, tmp_path, MLGATE_ADDRESS=f"localhost:{port}")
    assert code == 0, said + logged
    assert re.search(r"workers:\s+1", said), said
    assert 'mlgate_jobs_finished_total{kind="train",state="succeeded"} 1.0' in said, said
    ended = [json.loads(line) for line in said.splitlines() if line.startswith('{"time"')]
    assert any(e.get("outcome") == "succeeded" and e.get("kind") == "train" for e in ended)
