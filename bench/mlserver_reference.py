"""The reference ``make bench`` holds mlgate's REST binding to: MLServer serving the README's
forest through ``mlserver-sklearn``, over its REST port (its fast path).

MLServer goes into a venv of its own (``.venv-mlserver``, from the pinned
``bench/mlserver-requirements.txt``), so that our own pins never meet its. The forest is fitted
there, by that venv's scikit-learn, exactly as mlgate's seed job fits it (the diabetes data,
an 80/20 split, ``RandomForestRegressor(max_depth=3, n_estimators=100, random_state=42)``), and
MLServer runs with its defaults but for its ports, its debug logging off (as in production), and
its adaptive batching on with mlgate's batching bounds (up to the requests in flight, waiting at
most 2 ms), so both servers may evaluate concurrent requests together.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["REQUIREMENTS", "VENV", "MLServer", "ensure_venv"]

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-mlserver"
REQUIREMENTS = Path(__file__).with_name("mlserver-requirements.txt")
MODEL = "diabetes-rf"
_START_TIMEOUT = 180.0

# Run by the MLServer venv's Python: its scikit-learn fits and saves what its runtime loads.
_FIT = """
import sys
import joblib
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import train_test_split

frame = load_diabetes(as_frame=True).frame
features = ["age", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
X_train, _X_test, y_train, _y_test = train_test_split(
    frame[features], frame["target"], test_size=0.2, random_state=42
)
model = RandomForestRegressor(max_depth=3, n_estimators=100, random_state=42)
joblib.dump(model.fit(X_train.to_numpy(), y_train), sys.argv[1])
"""


def ensure_venv() -> Path:
    """The MLServer venv's Python, the venv made or brought up to the pinned requirements first
    (a venv that already has them is used as it is)."""
    python = VENV / "bin" / "python"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = VENV / ".requirements.sha256"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"installing MLServer into {VENV} ...", file=sys.stderr, flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(REQUIREMENTS)],
        check=True,
    )  # fmt: skip
    stamp.write_text(wanted)
    return python


class MLServer:
    """``mlserver start`` on the README's forest, on ``http_port``; ``stop`` ends it."""

    def __init__(
        self, tmp: Path, http_port: int, grpc_port: int, metrics_port: int, *, batch: int = 32
    ) -> None:
        python = ensure_venv()
        self.http_port = http_port
        models = tmp / "mlserver"
        model = models / MODEL
        model.mkdir(parents=True)
        subprocess.run([str(python), "-c", _FIT, str(model / "model.joblib")], check=True)
        (model / "model-settings.json").write_text(
            json.dumps(
                {
                    "name": MODEL,
                    "implementation": "mlserver_sklearn.SKLearnModel",
                    "parameters": {"uri": "./model.joblib", "version": "1"},
                    # Its adaptive batching, as mlgate's: up to the requests in flight, waiting
                    # at most MLGATE_BATCH_MAX_DELAY_US's default (2 ms).
                    "max_batch_size": batch,
                    "max_batch_time": 0.002,
                }
            )
        )
        (models / "settings.json").write_text(
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "http_port": http_port,
                    "grpc_port": grpc_port,
                    "metrics_port": metrics_port,
                    # As it is run in production: without its debug logging.
                    "debug": False,
                }
            )
        )
        self._log = tmp / "mlserver.log"
        with self._log.open("wb") as out:
            self._process = subprocess.Popen(
                [str(VENV / "bin" / "mlserver"), "start", str(models)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}"},
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        url = f"http://127.0.0.1:{self.http_port}/v2/models/{MODEL}/ready"
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"MLServer did not start:\n{self._log.read_text()[-3000:]}")
            time.sleep(0.5)  # a process start has no event to await

    def stop(self) -> None:
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
