"""One key for a job's id in every --json output: ``job_id``, whether the output is a result, an
event, a job record or a list of them; a job record keeps ``id`` (the same value) for scripts
written before."""

from __future__ import annotations

import json

from tests.support.cli_runner import Run, cli_json
from tests.support.samples import DIABETES_FEATURES, DOC_ROW

FEATURES = ",".join(DIABETES_FEATURES)


def test_every_json_output_names_a_job_by_job_id(mlgate: Run) -> None:
    detached = cli_json(mlgate, "train", "diabetes", "--target", "target", "--detach")
    job_id = detached["job_id"]
    status, out, err = mlgate("--json", "jobs", "watch", job_id)
    assert status == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert {event["job_id"] for event in events} == {job_id}

    record = cli_json(mlgate, "jobs", "get", job_id)
    assert record["job_id"] == record["id"] == job_id
    listed = cli_json(mlgate, "jobs", "list")
    assert [(j["job_id"], j["id"]) for j in listed] == [(job_id, job_id)]
    cancelled = cli_json(mlgate, "jobs", "cancel", job_id)
    assert cancelled["job_id"] == job_id  # it had ended: the record, and a note saying so

    trained = cli_json(mlgate, "train", "diabetes", "--target", "target", "-f", FEATURES)
    predicted = cli_json(mlgate, "predict", trained["model_id"], "--row", json.dumps(DOC_ROW))
    for result in (trained, predicted):
        assert result["job_id"].startswith("job_") and "id" not in result
    model = cli_json(mlgate, "models", "get", trained["model_id"])
    assert (model["id"], model["job_id"]) == (trained["model_id"], trained["job_id"])
