"""Two workers on one host: a second worker given the first one's MLGATE_WORKER_METRICS_PORT stops
at start-up saying why and what to do; given 0, it picks a free port and its start-up line names
it."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.fresh import free_port
from tests.support.serving import MLGATE, clean_env, run_mlgate


@contextmanager
def _worker(tmp_path: Path, name: str, metrics_port: str) -> Iterator[str]:
    """An ``mlgate worker`` with /metrics on ``metrics_port``; its start-up line."""
    env = clean_env(MLGATE_DATA_DIR=str(tmp_path / "data"), MLGATE_WORKER_METRICS_PORT=metrics_port)
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [str(MLGATE), "worker"], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        deadline = time.monotonic() + 60
        while "mlgate worker running" not in log.read_text():
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)  # its log is the only signal a separate process gives
        yield next(line for line in log.read_text().splitlines() if "mlgate worker running" in line)
    finally:
        worker.terminate()
        worker.wait(60)


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
