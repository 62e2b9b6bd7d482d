"""The real ``mlgate`` console script as a child process, with the environment a test gives it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["MLGATE", "Served", "clean_env", "run_mlgate", "serve_process", "worker_process"]

MLGATE = Path(sys.executable).parent / "mlgate"


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any MLGATE_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLGATE_")}
    return {**env, **extra}


def run_mlgate(
    *argv: str, env: Mapping[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    if not MLGATE.exists():
        pytest.fail(f"{MLGATE} is missing: install the package with `.venv/bin/pip install -e .`")
    return subprocess.run(
        [str(MLGATE), *argv],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class Served:
    process: subprocess.Popen[str]
    port: int
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextmanager
def serve_process(
    tmp_path: Path, *argv: str, env: Mapping[str, str], command: str = "serve"
) -> Iterator[Served]:
    """``mlgate serve --port 0`` (plus ``argv``) until its banner; killed afterwards."""
    log = tmp_path / f"{command}.log"
    with log.open("w") as errors:
        # The log goes to a file: a pipe nobody reads could fill and stall the server.
        process = subprocess.Popen(
            [str(MLGATE), command, "--port", "0", "--data-dir", str(tmp_path / "data"), *argv],
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r" on port (\d+)$", line.strip())
        if not match:
            process.kill()
            pytest.fail(f"mlgate {command} did not start: {line!r}\n{log.read_text()}")
        yield Served(process, int(match.group(1)), log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@contextmanager
def worker_process(log: Path, env: Mapping[str, str]) -> Iterator[str]:
    """``mlgate worker`` with ``env``, its output in ``log``, once it runs: its start-up line.
    Stopped (SIGTERM) afterwards."""
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [str(MLGATE), "worker"], stdout=out, stderr=subprocess.STDOUT, env=dict(env)
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
