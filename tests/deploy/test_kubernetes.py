"""deploy/kubernetes without a cluster: both overlays render, every object validates against its
schema (core objects by kubernetes-validate, KEDA's by its CRD schema), and what the pods are
given (variables, ports, probes, grace periods, queue names) is what the code reads and does."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from brokers.settings import BrokerSettings
from mlgate.tokens import parse_tokens
from server.app import LIVENESS_SERVICE, Gateway
from server.settings import GatewaySettings
from tests.support.kubernetes import (
    KUBERNETES,
    OVERLAYS,
    Manifest,
    by_kind,
    check_triggers,
    keda_errors,
    render,
    render_with,
)
from tests.support.walkthroughs import environment, run_walkthrough, script
from workers.main import STOP_GRACE
from workers.settings import WorkerSettings

ROOT = KUBERNETES.parents[1]
# The oldest Kubernetes the manifests are for (the preStop sleep action is on by default from
# 1.30), and the newest whose schemas kubernetes-validate carries.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
# What boto3 reads for S3 credentials and region (mlgate's own S3 variables are MLGATE_S3_*).
AWS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"}
CODE = ("mlgate", "brokers", "server", "workers", "storage")


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Manifest]]:
    return request.param, render(KUBERNETES / "overlays" / request.param)


def _validate(objects: list[Manifest]) -> None:
    keda = [o for o in objects if o["apiVersion"].startswith("keda.sh/")]
    for found in objects:
        if found in keda:
            continue
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(found, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{found['kind']} {found['metadata']['name']} (v{version}): {exc}")
    assert keda_errors(keda) == {(o["kind"], o["metadata"]["name"]): [] for o in keda}


def test_every_object_of_each_overlay_validates(overlay: tuple[str, list[Manifest]]) -> None:
    _name, objects = overlay
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {
        ("Deployment", "mlgate-gateway"),
        ("Deployment", "mlgate-worker"),
        ("Service", "mlgate-gateway"),
        ("Service", "mlgate-gateway-headless"),
        ("PodDisruptionBudget", "mlgate-gateway"),
        ("ConfigMap", "mlgate-config"),
        ("Secret", "mlgate-secrets"),
        ("Secret", "mlgate-tokens"),
        ("Secret", "mlgate-broker"),
        ("ScaledObject", "mlgate-worker"),
    } <= kinds
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {
        "mlgate"
    }
    _validate(objects)


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_gateway_tls_component_validates_and_serves_tls(name: str, tmp_path: Path) -> None:
    objects = render_with(tmp_path, name, ["gateway-tls"])
    _validate(objects)
    gateway = _container(objects, "mlgate-gateway")
    settings = GatewaySettings.from_env(_environment(objects, "mlgate-gateway"))
    assert settings.tls.enabled
    mounts = {m["name"]: m["mountPath"] for m in gateway["volumeMounts"]}
    assert settings.tls.cert == f"{mounts['tls']}/tls.crt"
    assert settings.tls.key == f"{mounts['tls']}/tls.key"
    assert by_kind(objects, "Secret")["mlgate-gateway-tls"]["type"] == "kubernetes.io/tls"
    # The kubelet's gRPC probes speak plaintext: with TLS on they knock on the port instead.
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert gateway[probe]["tcpSocket"]["port"] == settings.port


def _container(objects: list[Manifest], deployment: str) -> dict[str, Any]:
    pod = by_kind(objects, "Deployment")[deployment]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return {**container, "_pod": pod}


def _environment(objects: list[Manifest], deployment: str) -> dict[str, str]:
    """The environment the deployment's container starts with (ConfigMaps, Secrets, env)."""
    container = _container(objects, deployment)
    maps, secrets = by_kind(objects, "ConfigMap"), by_kind(objects, "Secret")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(maps[source["configMapRef"]["name"]]["data"])
        else:
            env.update(secrets[source["secretRef"]["name"]]["stringData"])
    env.update({e["name"]: e["value"] for e in container.get("env", [])})
    return env


def _variables_in_code() -> set[str]:
    found: set[str] = set()
    for package in CODE:
        for path in (ROOT / package).rglob("*.py"):
            found |= set(re.findall(r"\bMLGATE_[A-Z0-9_]+\b", path.read_text()))
    return found


def test_the_pods_are_given_variables_mlgate_reads(overlay: tuple[str, list[Manifest]]) -> None:
    name, objects = overlay
    known = _variables_in_code()
    for deployment in ("mlgate-gateway", "mlgate-worker"):
        env = _environment(objects, deployment)
        unknown = {v for v in env if v not in known and v not in AWS}
        assert not unknown, f"{deployment} is given variables nothing reads: {unknown}"
        assert BrokerSettings.from_env(env).kind == name
        assert "REPLACE_ME" in BrokerSettings.from_env(env).url
        ports = {p["name"]: p["containerPort"] for p in _container(objects, deployment)["ports"]}
        if deployment == "mlgate-gateway":
            settings = GatewaySettings.from_env(env)
            assert settings.host == settings.metrics_host == "0.0.0.0"
            assert settings.store_url.startswith("postgresql://")
            assert "REPLACE_ME" in settings.store_url
            assert settings.storage_url.startswith("s3://")
            assert ports == {
                "grpc": settings.port,
                "http": settings.http_port,
                "metrics": settings.metrics_port,
            }
            assert parse_tokens(_tokens_file(objects, settings.auth_tokens_file))
        else:
            worker = WorkerSettings.from_env(env)
            assert worker.metrics_host == "0.0.0.0"
            assert worker.storage_url.startswith("s3://")
            assert ports == {"metrics": worker.metrics_port}
            limits = _container(objects, deployment)["resources"]["limits"]
            # A fit's limits stay inside the container's: mlgate's defaults are the node's.
            assert worker.train_memory_limit + worker.model_cache_bytes < _bytes(limits["memory"])
            assert 0 < worker.fit_cores <= int(limits["cpu"])


def _bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * {"Mi": 2**20, "Gi": 2**30}[unit]


def _tokens_file(objects: list[Manifest], path: str) -> str:
    gateway = _container(objects, "mlgate-gateway")
    directory, key = path.rsplit("/", 1)
    (mount,) = [m for m in gateway["volumeMounts"] if m["mountPath"] == directory]
    (volume,) = [v for v in gateway["_pod"]["volumes"] if v["name"] == mount["name"]]
    text: str = by_kind(objects, "Secret")[volume["secret"]["secretName"]]["stringData"][key]
    return text


def test_services_and_probes_reach_the_gateway_as_it_serves(
    overlay: tuple[str, list[Manifest]],
) -> None:
    _name, objects = overlay
    settings = GatewaySettings.from_env(_environment(objects, "mlgate-gateway"))
    gateway = _container(objects, "mlgate-gateway")
    ready, live, start = (
        gateway["readinessProbe"],
        gateway["livenessProbe"],
        gateway["startupProbe"],
    )
    # grpc.health.v1 on the gateway's port: the overall status for readiness (NOT_SERVING while
    # a dependency is down), the process alone for liveness.
    assert ready["grpc"] == {"port": settings.port}
    assert live["grpc"] == start["grpc"] == {"port": settings.port, "service": LIVENESS_SERVICE}
    template = by_kind(objects, "Deployment")["mlgate-gateway"]["spec"]["template"]
    for service in by_kind(objects, "Service").values():
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert ports["grpc"]["port"] == settings.port and ports["grpc"]["targetPort"] == "grpc"
        assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    budget = by_kind(objects, "PodDisruptionBudget")["mlgate-gateway"]["spec"]
    replicas = by_kind(objects, "Deployment")["mlgate-gateway"]["spec"]["replicas"]
    assert 0 < budget["minAvailable"] < replicas


def test_grace_periods_outlast_the_drains(overlay: tuple[str, list[Manifest]]) -> None:
    _name, objects = overlay
    gateway = _container(objects, "mlgate-gateway")
    # The preStop sleep, then SIGTERM: running calls get Gateway.stop's grace; the event
    # consumers (two, up to 5 s each) and the broker close after it.
    pre_stop = gateway["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = inspect.signature(Gateway.stop).parameters["grace"].default
    assert gateway["_pod"]["terminationGracePeriodSeconds"] >= pre_stop + grace + 2 * 5 + 10
    # A worker lets running jobs finish for STOP_GRACE on each busy work queue, then closes.
    worker = _container(objects, "mlgate-worker")["_pod"]
    assert worker["terminationGracePeriodSeconds"] >= 2 * STOP_GRACE + 20


def test_workers_scale_on_the_queues_the_brokers_declare(
    overlay: tuple[str, list[Manifest]],
) -> None:
    name, objects = overlay
    namespace = _environment(objects, "mlgate-worker")["MLGATE_NAMESPACE"]
    (scaled,) = by_kind(objects, "ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"] == {"name": "mlgate-worker"}
    assert "replicas" not in by_kind(objects, "Deployment")["mlgate-worker"]["spec"]
    triggers = scaled["spec"]["triggers"]
    assert (
        check_triggers(triggers, namespace)
        == {
            "rabbitmq": {"rabbitmq"},
            "redis": {"redis-streams"},
        }[name]
    )
    # Each trigger's credentials: a TriggerAuthentication whose Secret holds the keys it names.
    authentications = by_kind(objects, "TriggerAuthentication")
    secrets = by_kind(objects, "Secret")
    for trigger in triggers:
        authentication = authentications[trigger["authenticationRef"]["name"]]
        for ref in authentication["spec"]["secretTargetRef"]:
            assert ref["key"] in secrets[ref["name"]]["stringData"], ref


@pytest.fixture(scope="module")
def every_overlay() -> Iterator[dict[str, list[Manifest]]]:
    yield {name: render(KUBERNETES / "overlays" / name) for name in OVERLAYS}


def test_the_overlays_differ_only_in_the_broker(every_overlay: dict[str, list[Manifest]]) -> None:
    def shared(objects: list[Manifest]) -> list[Manifest]:
        skip = {"ScaledObject", "TriggerAuthentication"}
        return [
            o
            for o in objects
            if o["kind"] not in skip
            and o["metadata"]["name"] not in {"mlgate-broker", "mlgate-config"}
            and not o["metadata"]["name"].startswith("mlgate-keda-")
        ]

    rabbitmq, redis = (shared(every_overlay[name]) for name in OVERLAYS)
    assert rabbitmq == redis


def test_the_kubernetes_walkthrough(tmp_path: Path) -> None:
    """docs/kubernetes.md's commands that need no cluster: a token and its line, then the
    rendered overlay, whose objects the reader counts."""
    source = script(ROOT / "docs" / "kubernetes.md", "kubernetes", {"deploy/": f"{ROOT}/deploy/"})
    out = run_walkthrough(source, tmp_path, environment(tmp_path)).stdout
    (token_line,) = [line for line in out.splitlines() if line.endswith(" train ci-bot")]
    assert parse_tokens(token_line)
    rendered = (tmp_path / "mlgate-redis.yaml").read_text()
    assert out.splitlines()[-1] == str(len(render(KUBERNETES / "overlays" / "redis")))
    assert "kind: ScaledObject" in rendered
