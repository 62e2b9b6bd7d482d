"""The client distribution installs alone: ``pip install ./clients`` into a fresh virtualenv pulls
grpcio and protobuf only, and its ``mlgate`` runs the CLI walkthrough against a gateway."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.samples import DOC_ROW
from tests.support.serving import clean_env, serve_process

ROOT = Path(__file__).resolve().parents[2]
#: What the server needs and a client must not pull in.
SERVER_ONLY = {"scikit-learn", "numpy", "pandas", "scipy", "boto3", "pika", "redis", "mlgate"}


def _run(*argv: str | Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv (no system site-packages) with ``pip install ./clients`` done."""
    if not (ROOT / "clients" / "mlgate" / "v1" / "jobs_pb2.py").exists():
        pytest.fail("the generated code is missing: run `make gen` first")
    tmp = tmp_path_factory.mktemp("client-venv")
    # A copy, so the build leaves nothing in the work tree and runs beside other tests.
    source = tmp / "clients"
    shutil.copytree(
        ROOT / "clients",
        source,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
    )
    venv = tmp / "venv"
    env = clean_env()
    made = _run(sys.executable, "-m", "venv", venv, cwd=tmp, env=env)
    assert made.returncode == 0, made.stderr
    installed = _run(venv / "bin" / "pip", "install", "--quiet", source, cwd=tmp, env=env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return venv


@pytest.mark.slow
def test_the_client_distribution_pulls_grpcio_and_protobuf_only(client_venv: Path) -> None:
    pip = client_venv / "bin" / "pip"
    listed = _run(pip, "list", "--format=json", cwd=client_venv, env=clean_env())
    names = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert {"mlgate-client", "grpcio", "protobuf"} <= names
    assert not names & SERVER_ONLY, f"the client pulled in {sorted(names & SERVER_ONLY)}"
    # Nothing generic at the top level: the client, the generated code in mlgate/, no more.
    site = next((client_venv / "lib").glob("python3*/site-packages"))
    ours = {p.name for p in site.iterdir() if p.name.startswith(("mlgate", "inference", "clients"))}
    assert {n for n in ours if not n.endswith(".dist-info")} == {"mlgate", "mlgate_client"}


@pytest.mark.slow
def test_the_client_commands_run_against_a_gateway(client_venv: Path, tmp_path: Path) -> None:
    mlgate = client_venv / "bin" / "mlgate"
    with serve_process(tmp_path, env=clean_env()) as served:
        env = clean_env(MLGATE_ADDRESS=served.address)

        def cli(*argv: str) -> str:
            done = _run(mlgate, *argv, cwd=tmp_path, env=env)
            assert done.returncode == 0, f"mlgate {' '.join(argv)}:\n{done.stdout}{done.stderr}"
            return done.stdout

        datasets = json.loads(cli("datasets", "list", "--json"))
        assert "diabetes" in {d["id"] for d in datasets}
        features = "age,bmi,bp,s1,s2,s3,s4,s5,s6"
        train = ["train", "diabetes", "--target", "target", "--features", features]
        trained = json.loads(cli(*train, "--name", "diabetes-rf", "--json"))
        cli("models", "alias", "diabetes-rf", "production", "1")
        row = json.dumps(DOC_ROW)
        predicted = json.loads(cli("predict", "diabetes-rf@production", "--row", row, "--json"))
        assert predicted["model_id"] == trained["model_id"]
        assert len(predicted["predictions"]) == 1
        job = json.loads(cli("jobs", "get", trained["job_id"], "--json"))
        assert (job["id"], job["state"]) == (trained["job_id"], "succeeded")
        assert trained["job_id"] in cli("jobs", "list")

        # The server's commands come with the server: this install has none of them.
        refused = _run(mlgate, "serve", cwd=tmp_path, env=env)
        assert refused.returncode == 2
        assert "invalid choice: 'serve'" in refused.stderr
