"""compose.yaml and the Dockerfile, checked without Docker: the stack comes up in order, workers
scale, and every setting the containers get is one the code reads, with the values it needs."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import botocore
import pika
import pytest
import yaml

from mlgate_client.cli import build_parser
from server.settings import GatewaySettings
from tests.support.rabbitmq import PrivateNode

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["mlgate", "brokers", "server", "workers", "clients", "storage"]
# Processes that run and stay up but serve nothing: nothing can ask them whether they are healthy.
NOT_SERVERS = {"worker"}
_VARIABLE = re.compile(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}")
#: What an operator's .env gives (see docs/compose.md); compose refuses to start without it.
DOT_ENV = {"RABBITMQ_USER": "mlgate", "RABBITMQ_PASSWORD": "0123456789abcdef"}


class Unset(Exception):
    """A ``${NAME:?message}`` whose variable is unset: compose stops with the message."""


def _substitute(match: re.Match[str], env: dict[str, str]) -> str:
    name, how, text = match.groups()
    if env.get(name):
        return env[name]
    if how == ":?":
        raise Unset(f"{name}: {text}")
    return text or ""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}``, through nested values."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: _substitute(m, env), value)
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    return value


def load(env: dict[str, str] | None = None, dot_env: dict[str, str] = DOT_ENV) -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return dict(interpolate(raw, {**dot_env, **(env or {})}))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") in ("no", False)


def mlgate_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if "build" in s}


def test_every_service_has_an_image_or_a_build(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name


def test_builds_use_the_root_dockerfile_and_one_image(services: dict[str, dict[str, Any]]) -> None:
    built = mlgate_services(services)
    assert {"gateway", "worker"} <= set(built)
    for name, service in built.items():
        build = service["build"]
        context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        assert (context / dockerfile).is_file(), name
    assert len({s.get("image") for s in built.values()}) == 1


def test_every_server_has_a_health_check(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if one_shot(service) or name in NOT_SERVERS:
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"


def test_dependencies_wait_for_health_or_completion(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for target, rule in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = rule.get("condition")
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no health check"
            else:
                assert condition == "service_completed_successfully", (name, target)
                assert one_shot(services[target]), f"{target} is not a one-shot service"


def test_the_stack_starts_in_order(services: dict[str, dict[str, Any]]) -> None:
    started: list[str] = []
    pending = dict(services)
    while pending:
        ready = [n for n, s in pending.items() if set(s.get("depends_on", {})) <= set(started)]
        assert ready, f"dependency cycle among {sorted(pending)}"
        started += ready
        for name in ready:
            del pending[name]
    for name in ("gateway", "worker"):
        needs = set(services[name]["depends_on"])
        s3_host = urlsplit(environment(services[name])["MLGATE_S3_ENDPOINT_URL"]).hostname
        assert {"rabbitmq", "redis", s3_host, "storage-init"} <= needs, name


def test_gateway_publishes_its_port_and_checks_its_health_over_grpc(
    services: dict[str, dict[str, Any]],
) -> None:
    gateway = services["gateway"]
    args = build_parser({}).parse_args(gateway["command"])
    assert args.command == "gateway"
    assert any(str(p).endswith(f":{args.port}") for p in gateway["ports"])
    assert any(str(p).startswith("127.0.0.1:50051:") for p in gateway["ports"])
    # Inside the compose network the gateway listens on every interface of its container.
    settings = GatewaySettings.from_env(environment(gateway))
    assert settings.host == "0.0.0.0"
    # The inference protocol's REST binding is published too, on the port the gateway serves it.
    assert settings.http_port
    assert any(str(p).startswith(f"127.0.0.1:{settings.http_port}:") for p in gateway["ports"])
    assert any(str(p).endswith(f":{settings.http_port}") for p in gateway["ports"])
    test = gateway["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert f"127.0.0.1:{args.port}" in test[3]
    assert "grpc_health" in test[3]
    compile(test[3], "healthcheck", "exec")


def test_workers_scale(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert build_parser({}).parse_args(worker["command"]).command == "worker"
    for key in ("container_name", "ports", "hostname"):
        assert key not in worker, f"worker sets {key}: `--scale worker=N` would clash"


def _read_names(roots: list[Path], pattern: str) -> set[str]:
    names: set[str] = set()
    for root in roots:
        for path in root.rglob("*.py"):
            names |= set(re.findall(pattern, path.read_text(errors="replace")))
    return names


def test_every_setting_given_is_one_the_code_reads(services: dict[str, dict[str, Any]]) -> None:
    ours = _read_names([ROOT / s for s in SOURCES], r"\bMLGATE_[A-Z0-9_]+\b")
    # AWS_* variables are read by botocore's credential and configuration chain.
    aws = _read_names([Path(botocore.__file__).parent], r"\bAWS_[A-Z0-9_]+\b")
    for name, service in mlgate_services(services).items():
        for variable in environment(service):
            known = ours if variable.startswith("MLGATE_") else aws
            assert variable.startswith(("MLGATE_", "AWS_")), f"{name}: {variable}"
            assert variable in known, f"{name} sets {variable}, which nothing reads"


@pytest.mark.parametrize("broker", ["rabbitmq", "redis"])
def test_one_variable_switches_the_broker(broker: str) -> None:
    services = load({"MLGATE_BROKER": broker})["services"]
    for name, service in mlgate_services(services).items():
        settings = GatewaySettings.from_env(environment(service))
        assert settings.broker.kind == broker, name
        assert urlsplit(settings.broker.url).hostname == broker
        assert broker in services
        store = urlsplit(settings.store_url)
        assert (store.scheme, store.hostname) == ("redis", "redis")
        assert settings.storage_url.startswith("s3://")


def test_s3_settings_match_the_s3_server(compose: dict[str, Any]) -> None:
    identities = json.loads(compose["configs"]["seaweedfs-s3"]["content"])["identities"]
    keys = {(c["accessKey"], c["secretKey"]) for i in identities for c in i["credentials"]}
    services = compose["services"]
    for name, service in mlgate_services(services).items():
        env = environment(service)
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) in keys, name
        endpoint = urlsplit(env["MLGATE_S3_ENDPOINT_URL"])
        assert endpoint.hostname in services
        assert f"-s3.port={endpoint.port}" in services[endpoint.hostname]["command"] or (
            endpoint.port == 8333  # SeaweedFS's default S3 port
        )
        assert "-s3" in services[endpoint.hostname]["command"]
    # The one-shot service creates the bucket the containers use.
    init = services["storage-init"]
    assert init["entrypoint"][:3] == ["python", "-m", "storage.s3"]
    assert (ROOT / "storage" / "s3.py").read_text().count("def main(") == 1


def test_mounted_files_exist_and_rabbitmq_loads_the_definitions(compose: dict[str, Any]) -> None:
    configs = compose["configs"]
    for name, config in configs.items():
        if "file" in config:
            assert (ROOT / config["file"]).is_file(), f"config {name}: {config['file']} missing"
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    mounts = {c["target"]: configs[c["source"]] for c in compose["services"]["rabbitmq"]["configs"]}
    conf = "\n".join(
        c.get("content") or (ROOT / c["file"]).read_text()
        for t, c in mounts.items()
        if t.endswith(".conf")
    )
    loaded = re.findall(r"^\s*(?:management\.)?load_definitions\s*=\s*(\S+)", conf, re.M)
    assert loaded and loaded[-1] in mounts, "rabbitmq loads definitions nobody mounts"
    assert any("15672:" in str(p) for p in compose["services"]["rabbitmq"]["ports"])


def test_rabbitmq_has_the_administrator_from_dot_env_and_no_guest(compose: dict[str, Any]) -> None:
    rabbitmq = compose["services"]["rabbitmq"]
    mounts = {c["target"]: compose["configs"][c["source"]] for c in rabbitmq["configs"]}
    definitions = json.loads(mounts["/etc/rabbitmq/definitions.json"]["content"])
    users = {u["name"]: u for u in definitions["users"]}
    assert set(users) == {DOT_ENV["RABBITMQ_USER"]}
    assert users["mlgate"]["password"] == DOT_ENV["RABBITMQ_PASSWORD"]
    assert definitions["permissions"][0]["user"] == "mlgate"
    # The gateway and workers log in as that user, with that password.
    for name, service in mlgate_services(compose["services"]).items():
        url = urlsplit(environment(service)["MLGATE_RABBITMQ_URL"])
        assert (url.username, url.password) == ("mlgate", DOT_ENV["RABBITMQ_PASSWORD"]), name
    everything = json.dumps(compose)
    assert "guest" not in everything and "loopback_users" not in everything
    # Without the .env file compose stops, saying where to look.
    with pytest.raises(Unset, match=r"RABBITMQ_PASSWORD: set RABBITMQ_PASSWORD in \.env"):
        load(dot_env={})
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def test_every_image_is_pinned_to_a_version(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "build" in service:
            continue  # built from this checkout
        image = service["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
        assert re.match(r"v?\d+\.\d+(\.\d+)?(-[\w.]+)?$", tag), f"{name}: {image} is not pinned"


def test_published_ports_are_on_loopback_unless_the_operator_says_otherwise() -> None:
    for env, address in (({}, "127.0.0.1"), ({"MLGATE_PUBLISH_ADDRESS": "0.0.0.0"}, "0.0.0.0")):
        for name, service in load(env)["services"].items():
            for port in service.get("ports", []):
                assert str(port).startswith(f"{address}:"), f"{name} publishes {port}"


def test_dockerfile_generates_the_grpc_code_and_copies_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.M)
    # The generated code goes with the client distribution, whose wheel is built beside mlgate's.
    protoc = "python -m grpc_tools.protoc -Iprotos --python_out=clients --grpc_python_out=clients"
    assert protoc in dockerfile
    assert "pip wheel --no-deps --wheel-dir /wheels ./clients ." in dockerfile
    assert re.search(r'^ENTRYPOINT \["mlgate"\]', dockerfile, re.M)
    copied = {
        source.rstrip("/")
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and "--from" not in line
        for source in shlex.split(line)[1:-1]
    }
    pyproject = (ROOT / "pyproject.toml").read_text()
    packages = re.search(r"include = \[([^\]]*)\]", pyproject)
    assert packages
    for pattern in [*re.findall(r'"(\w+)\*?"', packages.group(1)), "clients", "protos"]:
        assert pattern in copied, f"the image does not copy {pattern}"
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not any(fnmatch.fnmatch(source, p) for p in ignored), f".dockerignore drops {source}"


@pytest.mark.slow
def test_rabbitmq_admits_the_dot_env_user_and_not_guest(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """The compose definitions, loaded by a real node with the shipped rabbitmq.conf."""
    users = tmp_path / "definitions.json"
    users.write_text(compose["configs"]["rabbitmq-users"]["content"])
    node = PrivateNode(tmp_path, definitions=users)
    node.url = node.url.replace("guest:guest", f"mlgate:{DOT_ENV['RABBITMQ_PASSWORD']}")
    node.start()  # waits until the .env user can log in
    try:
        guest = pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{node.port}/%2F")
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            pika.BlockingConnection(guest)
    finally:
        node.stop()
