"""JSON logs from real gateway and worker processes: one object per line, a line for each job's
end, and the broker's password nowhere (it is in the broker URL they were given)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from mlgate_client import MLGateClient
from tests.support.cluster import Cluster
from tests.support.redis import PrivateRedis
from tests.support.samples import DIABETES_FEATURES, DOC_ROW

# Process banners go to stdout for people and scripts; everything logged is JSON.
BANNERS = ("mlgate gateway on port", "mlgate worker running", "listening on ")


def test_json_logs_parse_name_each_job_end_and_never_show_the_password(tmp_path: Path) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    server = PrivateRedis(tmp_path / "redis", "--requirepass", secret).start()
    cluster = Cluster(
        tmp_path,
        "redis",
        {
            "MLGATE_REDIS_URL": f"redis://:{secret}@127.0.0.1:{server.port}/0",
            "MLGATE_LOG_FORMAT": "json",
            "MLGATE_LOG_LEVEL": "debug",
        },
    )
    try:
        address = cluster.start_gateway()
        worker = cluster.start_worker()
        with MLGateClient(address, timeout=30) as client:
            model = client.train("diabetes", target="target", features=DIABETES_FEATURES)
            client.predict(model.model_id, [DOC_ROW])
    finally:
        cluster.stop()
        server.stop()

    entries = []
    for process in [p for p, _ in cluster.gateways] + cluster.workers:
        text = cluster.log(process)
        assert secret not in text
        for line in text.splitlines():
            if line.startswith(BANNERS):
                continue
            entry = json.loads(line)  # every other line is one JSON object
            assert {"time", "level", "logger", "message"} <= entry.keys(), entry
            entries.append(entry)
    ends = [e for e in entries if e.get("outcome") == "succeeded"]
    assert {e["kind"] for e in ends} == {"train", "predict"}
    train_end = next(e for e in ends if e["kind"] == "train")
    assert train_end["job_id"].startswith("job_") and train_end["attempt"] == 1
    assert train_end["duration_s"] > 0
    assert any(e["level"] == "DEBUG" for e in entries)  # MLGATE_LOG_LEVEL took effect
    assert worker.returncode is not None
