"""One data directory, one server: a second `mlgate serve` on a data directory another one serves
refuses to start, naming the first's pid (it would otherwise requeue the first's jobs and take
cancels its workers never hear); a lock left by a process that died blocks nobody."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.data_lock import LOCK_FILE
from tests.support.cluster import MLGATE
from tests.support.fresh import free_port


class Serving:
    """`mlgate serve` processes on one data directory, each stopped at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.data = tmp / "data"
        self.processes: list[subprocess.Popen[str]] = []

    def start(self) -> subprocess.Popen[str]:
        # The broker must be the embedded one, whatever the environment running the tests says.
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLGATE_")}
        process = subprocess.Popen(
            [MLGATE, "serve", "--port", str(free_port()), "--data-dir", str(self.data)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.processes.append(process)
        return process

    def wait_listening(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                pytest.fail(f"mlgate serve ended: {process.wait()}, {process.stderr.read()}")  # type: ignore[union-attr]
            if line.startswith("listening on "):
                return
        pytest.fail("mlgate serve did not say where it listens within 60 s")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(40)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Serving]:
    servers = Serving(tmp_path)
    yield servers
    servers.stop()


@pytest.mark.slow
def test_a_second_server_on_the_same_data_directory_refuses_naming_the_first(
    serving: Serving,
) -> None:
    first = serving.start()
    serving.wait_listening(first)

    second = serving.start()
    _, err = second.communicate(timeout=60)
    assert second.returncode == 1, err
    assert err.strip() == (
        f"error: the data directory {serving.data} is in use by mlgate (pid {first.pid}), which "
        "serves its jobs with its own embedded broker: stop it, or give this one another "
        "--data-dir (MLGATE_DATA_DIR)"
    )
    assert first.poll() is None  # the first serves on, untouched

    # Once the first is gone, however it went, its lock goes with it: the file stays, stale.
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    assert (serving.data / LOCK_FILE).read_text().strip() == str(first.pid)
    third = serving.start()
    serving.wait_listening(third)
    assert (serving.data / LOCK_FILE).read_text().strip() == str(third.pid)
