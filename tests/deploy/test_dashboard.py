"""The Grafana dashboard and the Prometheus config refer only to metrics mlgate exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from mlgate.metrics import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[2]
# The standard process metrics prometheus-client exports on Linux.
PROCESS = {"process_resident_memory_bytes", "process_cpu_seconds_total"}
_NAME = re.compile(r"\b(?:mlgate|process)_[a-z_]+\b")


def _series(expr: str) -> set[str]:
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in _NAME.findall(expr)}


def test_every_dashboard_query_uses_exported_metrics_only() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/mlgate-dashboard.json").read_text())
    used: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= _series(target["expr"])
    unknown = used - METRIC_NAMES - PROCESS
    assert not unknown, f"the dashboard queries metrics nobody exports: {sorted(unknown)}"
    # Every mlgate metric is on the dashboard, so a new one is not forgotten there.
    assert used >= METRIC_NAMES, sorted(METRIC_NAMES - used)


def test_prometheus_scrapes_the_gateway_and_every_worker_replica() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["mlgate-gateway"]["static_configs"][0]["targets"] == ["gateway:9100"]
    (workers,) = jobs["mlgate-worker"]["dns_sd_configs"]
    assert workers["names"] == ["worker"] and workers["port"] == 9101


def test_compose_runs_prometheus_on_the_ports_the_processes_serve() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    prometheus = services["prometheus"]
    assert ":" in prometheus["image"] and not prometheus["image"].endswith(":latest")
    (config,) = prometheus["configs"]
    assert compose["configs"][config["source"]]["file"] == "./deploy/prometheus/prometheus.yml"
    assert config["target"] == "/etc/prometheus/prometheus.yml"
    env = services["gateway"]["environment"]  # the shared x-mlgate block, merged in
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    gateway_port = jobs["mlgate-gateway"]["static_configs"][0]["targets"][0].split(":")[1]
    assert env["MLGATE_METRICS_PORT"] == gateway_port
    assert env["MLGATE_WORKER_METRICS_PORT"] == str(
        jobs["mlgate-worker"]["dns_sd_configs"][0]["port"]
    )
