"""The walkthroughs of the README and of the capability pages it links (docs/registry.md,
prediction.md, security.md, operations.md, brokers.md) run as written: against a live embedded
gateway, and the RabbitMQ and Redis ones with their own gateway and workers on the real brokers."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import grpc
import pytest
import redis

from mlgate.v1 import models_pb2, models_pb2_grpc
from tests.support import rabbitmq
from tests.support import redis as shared_redis
from tests.support.fresh import free_port, unique_namespace
from tests.support.walkthroughs import ROOT, environment, run_walkthrough, script

README = ROOT / "README.md"
DOCS = ROOT / "docs"


def _run(name: str, address: str, cwd: Path, document: Path = README) -> str:
    """A walkthrough of ``document`` against the gateway at ``address``, which stands for
    localhost:50051."""
    source = script(document, name, {"localhost:50051": address})
    return run_walkthrough(source, cwd, environment(cwd, MLGATE_ADDRESS=address)).stdout


@pytest.mark.parametrize("name", ["grpcurl", "cli"])
def test_walkthrough_trains_then_predicts(name: str, embedded_gateway: str, tmp_path: Path) -> None:
    out = _run(name, embedded_gateway, tmp_path)
    assert re.search(r"mdl_[0-9a-f]{32}", out)
    assert "rmse" in out
    # The README's patient, predicted by the README's forest.
    assert "208.6" in out
    if name == "grpcurl":
        # Once from rows, once from columns (with a second patient after it).
        assert len(re.findall(r"\b208\.6445780005619\b", out)) == 2, out


def test_inference_walkthrough_with_grpcurl_the_cli_and_tritonclient(
    embedded_gateway: str, tmp_path: Path
) -> None:
    out = _run("inference", embedded_gateway, tmp_path, DOCS / "prediction.md")
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
    out = _run("registry", embedded_gateway, tmp_path, DOCS / "registry.md")
    assert "diabetes-rf@production -> diabetes-rf/1" in out
    # Version 1 is the README's forest, so the prediction through the alias is the README's.
    predictions = re.findall(r"^0\s+(\S+)$", out, re.M)
    assert len(predictions) == 2
    assert predictions[0].startswith("208.6") and not predictions[1].startswith("208.6")
    first_deeper = predictions[1]
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

    # Again on the same gateway, whose diabetes-rf has versions 1 and 2 now: the walkthrough
    # reads its versions from the trainings, so they are 3 and 4 and it works the same.
    again = tmp_path / "again"
    again.mkdir()
    out = _run("registry", embedded_gateway, again, DOCS / "registry.md")
    assert "diabetes-rf@production -> diabetes-rf/3" in out, out
    predictions = re.findall(r"^0\s+(\S+)$", out, re.M)
    assert predictions[0].startswith("208.6") and predictions[1] == first_deeper
    listed = re.findall(r"^([1-4])\s+mdl_[0-9a-f]{32}\s+(\S+)", out, re.M)
    assert listed == [("4", "-"), ("3", "production"), ("2", "-"), ("1", "-")]


def test_security_walkthrough_runs_with_mtls_tokens_and_a_rotation(tmp_path: Path) -> None:
    port = free_port()
    source = script(DOCS / "security.md", "security", {"50051": str(port)})
    done = run_walkthrough(source, tmp_path, environment(tmp_path))
    said, logged = done.stdout, done.stderr
    assert '"status": "SERVING"' in said
    assert re.search(r'"model_id": "mdl_[0-9a-f]{32}"', said)
    assert "refused, as it should be" in said
    assert "PERMISSION_DENIED: mlgate.v1.ModelService/DeleteModel needs the train role" in logged
    assert "the old token is refused" in said and "UNAUTHENTICATED" in logged
    # The new token lists alice's training job; the file never held a token.
    assert re.search(r"job_[0-9a-f]{32}\s+train\s+succeeded", said)
    lines = (tmp_path / "tokens.txt").read_text().splitlines()
    assert [line.split()[1:] for line in lines] == [["read", "dashboard"], ["train", "alice"]]
    assert "mlg_" not in "\n".join(lines) and "mlg_" not in logged


def test_operations_walkthrough_shows_status_metrics_and_json_logs(tmp_path: Path) -> None:
    port, metrics = free_port(), free_port()
    ports = {"50051": str(port), "9100": str(metrics)}
    source = script(DOCS / "operations.md", "operations", ports)
    env = environment(tmp_path, MLGATE_ADDRESS=f"localhost:{port}")
    said = run_walkthrough(source, tmp_path, env).stdout
    assert re.search(r"workers:\s+1", said), said
    # The embedded worker, by its heartbeat: where it runs, on which broker, heard lately.
    assert re.search(r"^HOST +PID +BROKER +RUNNING +HEARTBEAT +SINCE +JOBS$", said, re.M), said
    assert re.search(r"^\S+ +\d+ +memory +0 +\d\.\d s ago +", said, re.M), said
    (listed,) = [json.loads(line) for line in said.splitlines() if line.startswith('[{"broker"')]
    assert listed[0]["broker"] == "memory" and listed[0]["max_attempts"] == 3
    assert 'mlgate_jobs_finished_total{kind="train",state="succeeded"} 1.0' in said, said
    assert 'mlgate_jobs_running{kind="train"} 0.0' in said, said
    ended = [json.loads(line) for line in said.splitlines() if line.startswith('{"time"')]
    assert any(e.get("outcome") == "succeeded" and e.get("kind") == "train" for e in ended)


def _distributed(name: str, tmp_path: Path, namespace: str) -> str:
    """A walkthrough that starts its own gateway on "50051" (a free port here) and workers,
    under a namespace of its own on the shared broker."""
    port = free_port()
    env = environment(tmp_path, MLGATE_NAMESPACE=namespace, MLGATE_ADDRESS=f"localhost:{port}")
    source = script(DOCS / "brokers.md", name, {"50051": str(port)})
    return run_walkthrough(source, tmp_path, env).stdout


def _trained_job(out: str) -> str:
    """The job of `mlgate train`'s summary, which names a model and its metrics."""
    summary = re.search(
        r"^job: +(job_[0-9a-f]{32})\nmodel: +mdl_[0-9a-f]{32}\nmetrics: +mae=\S+  r2=\S+  rmse=\S+$",
        out,
        re.M,
    )
    assert summary, out
    return summary.group(1)


def test_rabbitmq_walkthrough_starts_a_gateway_and_workers_and_trains(tmp_path: Path) -> None:
    """As written: the gateway and two workers start in the background and `mlgate train` runs
    at once, waiting for the gateway to listen."""
    url = rabbitmq.require_rabbitmq()
    namespace = unique_namespace()
    try:
        _trained_job(_distributed("rabbitmq", tmp_path, namespace))
    finally:
        rabbitmq.delete_namespace(url, namespace)


def test_redis_walkthrough_starts_a_gateway_and_workers_and_trains(tmp_path: Path) -> None:
    """As written, with the Redis job store: the job's record lands under the run's
    MLGATE_NAMESPACE, beside its streams, not under another deployment's `mlgate:`."""
    url = shared_redis.require_redis()
    namespace = unique_namespace()
    client = redis.Redis.from_url(url)
    try:
        job_id = _trained_job(_distributed("redis", tmp_path, namespace))
        assert client.exists(f"{namespace}:job:{job_id}")
        assert client.exists(f"{namespace}:events")
        assert not client.exists(f"mlgate:job:{job_id}")
    finally:
        client.close()
        shared_redis.delete_namespace(url, namespace)
