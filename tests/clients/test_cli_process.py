"""The installed ``mlgate`` console script, run as a real process."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlgate_client import MLGateClient, TrainResult
from tests.support.samples import DIABETES_FEATURES, DOC_ROW
from tests.support.system import gateway_settings, running_gateway

MLGATE = Path(sys.executable).parent / "mlgate"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLGATE_")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def script() -> str:
    if not MLGATE.exists():
        pytest.fail(f"{MLGATE} is missing: install the package with `.venv/bin/pip install -e .`")
    return str(MLGATE)


def _run(script: str, *argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script, *argv], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_console_script_trains_and_predicts(script, embedded_gateway) -> None:
    env = _env(MLGATE_ADDRESS=embedded_gateway)
    features = ",".join(DIABETES_FEATURES)
    done = _run(
        script, "--json", "train", "diabetes", "--target", "target", "-f", features, env=env
    )
    assert done.returncode == 0, done.stderr
    model_id = json.loads(done.stdout)["model_id"]
    done = _run(script, "--json", "predict", model_id, "--row", json.dumps(DOC_ROW), env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["predictions"] == [pytest.approx(208.6, abs=0.1)]


def test_progress_bar_on_a_terminal(script, embedded_gateway) -> None:
    """With stderr on a terminal the stages are drawn in place, and the line is cleared after."""
    argv = [script, "--address", embedded_gateway, "train", "iris", "--target", "target"]
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            # Fits for a second or so: progress comes at most every quarter second.
            [*argv, "--param", "n_estimators=1500"],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=120,
            check=False,
        )
        os.close(follower)
        follower = -1
        screen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal has no writer left
                break
            if not chunk:
                break
            screen += chunk
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert done.returncode == 0
    drawn = screen.decode()
    assert re.search(r"\[#*\.*\]\s+\d+%\s+fitting", drawn), drawn
    assert drawn.endswith("\r\x1b[K")
    assert "model:" in done.stdout


@pytest.mark.parametrize(("command", "banner"), [("serve", "serving"), ("gateway", "gateway")])
def test_serve_and_gateway_run_until_sigterm(script, tmp_path, command, banner) -> None:
    log = tmp_path / "server.log"
    with log.open("w") as errors:
        # The log goes to a file: a pipe nobody reads could fill and stall the server.
        # A relative --data-dir, as `make run` passes it.
        process = subprocess.Popen(
            [script, command, "--port", "0", "--data-dir", "data"],
            cwd=tmp_path,
            env=_env(MLGATE_BROKER="memory"),
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(rf"mlgate {banner} on port (\d+)\n", line)
        assert match, f"first line {line!r}, log:\n{log.read_text()}"
        port = match.group(1)
        # Then where it listens and what to try next, runnable as printed.
        step = re.fullmatch(
            rf"listening on localhost:{port}; (.*?)(\S*mlgate --address localhost:{port} "
            rf"train diabetes --target target)\n",
            process.stdout.readline(),
        )
        assert step, log.read_text()
        env = _env(MLGATE_ADDRESS=f"127.0.0.1:{port}")
        listed = _run(script, "--json", "datasets", "list", env=env)
        assert listed.returncode == 0, listed.stderr
        assert "diabetes" in {d["id"] for d in json.loads(listed.stdout)}
        if command == "serve":
            assert step.group(1) == "try it from a second terminal: "
            trained = subprocess.run(
                shlex.split(step.group(2)), env=_env(), capture_output=True, text=True, timeout=120
            )
            assert trained.returncode == 0, trained.stderr
            assert "metrics: mae=" in trained.stdout
        else:
            assert "start workers with `" in step.group(1) and "mlgate worker`" in step.group(1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (tmp_path / "data" / "jobs.db").is_file()


def _require_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is needed at {url} ({exc}); start it with `make services`")


def test_gateway_and_worker_processes_share_a_redis_broker(script, tmp_path) -> None:
    """`mlgate gateway` and `mlgate worker` as separate processes, jobs flowing through Redis
    under a namespace of their own."""
    import uuid

    import redis

    url = "redis://127.0.0.1:6379/0"
    _require_redis(url)
    namespace = f"mlgate-cli-test-{uuid.uuid4().hex[:12]}"
    env = _env(MLGATE_BROKER="redis", MLGATE_BROKER_URL=url, MLGATE_NAMESPACE=namespace)
    data = str(tmp_path / "data")
    log = tmp_path / "server.log"
    processes: list[subprocess.Popen[str]] = []
    try:
        with log.open("w") as errors:
            for argv in (["gateway", "--port", "0"], ["worker"]):
                processes.append(
                    subprocess.Popen(
                        [script, *argv, "--data-dir", data],
                        env=env,
                        stdout=subprocess.PIPE,
                        stderr=errors,
                        text=True,
                    )
                )
        banners = [p.stdout.readline() for p in processes]  # type: ignore[union-attr]
        match = re.fullmatch(r"mlgate gateway on port (\d+)\n", banners[0])
        assert match, f"{banners}, log:\n{log.read_text()}"
        assert banners[1].startswith("mlgate worker running"), f"{banners}\n{log.read_text()}"
        client_env = _env(MLGATE_ADDRESS=f"127.0.0.1:{match.group(1)}")
        trained = _run(script, "--json", "train", "iris", "--target", "target", env=client_env)
        assert trained.returncode == 0, f"{trained.stderr}\nlog:\n{log.read_text()}"
        model_id = json.loads(trained.stdout)["model_id"]
        row = json.dumps({"sepal length (cm)": 5.1, "sepal width (cm)": 3.5,
                          "petal length (cm)": 1.4, "petal width (cm)": 0.2})  # fmt: skip
        predicted = _run(script, "--json", "predict", model_id, "--row", row, env=client_env)
        assert predicted.returncode == 0, predicted.stderr
        assert json.loads(predicted.stdout)["predictions"] == [0]
        for process in processes:
            process.send_signal(signal.SIGTERM)
        assert [p.wait(timeout=60) for p in processes] == [0, 0]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        server = redis.Redis.from_url(url)
        keys = list(server.scan_iter(match=f"{namespace}:*"))
        if keys:
            server.delete(*keys)


def _read_until(fd: int, pattern: str, limit: float = 60.0) -> str:
    """Terminal output up to and including ``pattern`` (bounded, for a command that hangs)."""
    seen = b""
    deadline = time.monotonic() + limit
    while re.search(pattern, seen.decode(errors="replace")) is None:
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, remaining))
        if not ready:
            pytest.fail(f"no {pattern!r} on the terminal within {limit}s: {seen!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            pytest.fail(f"the terminal closed before {pattern!r}: {seen!r}")
        seen += chunk
    return seen.decode(errors="replace")


def test_ctrl_c_leaves_the_job_running_and_says_how_to_follow_it(script, embedded_gateway) -> None:
    leader, follower = pty.openpty()
    argv = ["--address", embedded_gateway, "train", "diabetes", "--target", "target"]
    slow = ["--param", "n_estimators=400", "--param", "max_depth=12"]
    try:
        process = subprocess.Popen(
            [script, *argv, *slow],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            # A terminal's Ctrl-C, whatever started this suite: a shell without job control
            # starts a background command (`make test &`) with SIGINT ignored, and the CLI
            # would inherit that and never raise KeyboardInterrupt.
            preexec_fn=_default_sigint,
        )
        _read_until(leader, r"queued|loading_data|fitting")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
        message = _read_until(leader, r"mlgate jobs watch job_[0-9a-f]{32}")
    finally:
        os.close(follower)
        os.close(leader)
    job_id = re.findall(r"interrupted; job (job_[0-9a-f]{32}) keeps running", message)[-1]
    with MLGateClient(embedded_gateway, timeout=60) as client:
        assert isinstance(client.wait(job_id), TrainResult)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_second_server_on_a_taken_port_fails_at_start(script, tmp_path) -> None:
    """Two gateways never share a port (each would get half the calls): the second one exits
    non-zero with one line saying so, and the first keeps serving."""
    port = str(_closed_port())
    log = tmp_path / "first.log"
    with log.open("w") as errors:
        first = subprocess.Popen(
            [script, "serve", "--port", port, "--data-dir", str(tmp_path / "a")],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    try:
        assert first.stdout is not None
        assert first.stdout.readline() == f"mlgate serving on port {port}\n", log.read_text()
        second = _run(
            script, "serve", "--port", port, "--data-dir", str(tmp_path / "b"), env=_env()
        )
        assert second.returncode == 1
        assert second.stderr.splitlines() == [
            f"error: port {port} is in use; stop what listens there or choose another port "
            "with --port"
        ]
        listed = _run(script, "--address", f"127.0.0.1:{port}", "datasets", "list", env=_env())
        assert listed.returncode == 0 and "diabetes" in listed.stdout
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)


def test_a_client_waits_for_a_gateway_that_is_starting(script, tmp_path) -> None:
    """A command run just before its gateway listens says it is waiting, then goes through."""
    port = _closed_port()
    client = subprocess.Popen(
        [script, "--address", f"127.0.0.1:{port}", "--json", "datasets", "list"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    gateway = None
    try:
        assert client.stderr is not None
        assert client.stderr.readline() == f"waiting for the gateway at 127.0.0.1:{port}…\n"
        gateway = running_gateway(gateway_settings(tmp_path / "data").with_(port=port))
        out, err = client.communicate(timeout=60)
        assert client.returncode == 0, err
        assert "diabetes" in {d["id"] for d in json.loads(out)}
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        if gateway is not None:
            gateway.stop()


def test_output_closed_early_ends_quietly(script, embedded_gateway) -> None:
    """`mlgate jobs list | head -1`: the reader goes away and the command stops, no traceback
    and no error, with status 0 as Unix tools end when their output is closed."""
    reader, writer = os.pipe()
    os.close(reader)  # every write to the pipe now fails with EPIPE
    try:
        done = subprocess.run(
            [script, "--address", embedded_gateway, "datasets", "list"],
            env=_env(),
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(writer)
    assert (done.returncode, done.stderr) == (0, "")
