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
