"""Two workers on one host: a second worker given the first one's MLGATE_WORKER_METRICS_PORT stops
at start-up saying why and what to do; given 0, it picks a free port and its start-up line names
it."""

from __future__ import annotations

import re
import urllib.request
from contextlib import AbstractContextManager
from pathlib import Path

from tests.support.fresh import free_port
from tests.support.serving import clean_env, run_mlgate, worker_process


def _worker(tmp_path: Path, name: str, metrics_port: str) -> AbstractContextManager[str]:
    """An ``mlgate worker`` with /metrics on ``metrics_port``; its start-up line."""
    env = clean_env(MLGATE_DATA_DIR=str(tmp_path / "data"), MLGATE_WORKER_METRICS_PORT=metrics_port)
    return worker_process(tmp_path / f"{name}.log", env)


def test_a_second_worker_on_a_taken_metrics_port_says_what_to_do(tmp_path: Path) -> None:
    port = free_port()
    with _worker(tmp_path, "first", str(port)) as first:
        assert first.endswith(f"; metrics on http://127.0.0.1:{port}/metrics)"), first
        env = clean_env(
            MLGATE_DATA_DIR=str(tmp_path / "data"), MLGATE_WORKER_METRICS_PORT=str(port)
        )
        second = run_mlgate("worker", env=env)
        assert second.returncode != 0
        assert (
            f"MLGATE_WORKER_METRICS_PORT={port} is in use (by another worker on this host?): "
            "each worker on a host needs a port of its own; give each its own "
            "MLGATE_WORKER_METRICS_PORT, or 0 to pick a free one"
        ) in second.stderr, second.stderr
        assert "Traceback" not in second.stderr

        with _worker(tmp_path, "second", "0") as line:
            found = re.search(r"; metrics on http://127\.0\.0\.1:(\d+)/metrics\)$", line)
            assert found and int(found.group(1)) not in (0, port), line
            scraped = urllib.request.urlopen(
                f"http://127.0.0.1:{found.group(1)}/metrics", timeout=10
            )
            assert b"mlgate_model_cache_bytes" in scraped.read()
