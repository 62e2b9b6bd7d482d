"""Names, versions, aliases, metadata, exports and dataset lineage through the CLI and the client
library, in process against the real embedded system."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mlgate_client import MLGateClient
from mlgate_client.errors import MLGateError
from tests.support.cli_runner import Run, cli_json
from tests.support.samples import DIABETES_FEATURES, DOC_ROW, HOUSES_CSV

FEATURES = ",".join(DIABETES_FEATURES)
ROW = json.dumps(DOC_ROW)


def _train(mlgate: Run, *extra: str) -> dict[str, object]:
    args = ["train", "diabetes", "--target", "target", "--features", FEATURES, *extra]
    trained: dict[str, object] = cli_json(mlgate, *args)
    return trained


def test_the_issue_walkthrough_names_versions_aliases_and_predicts(mlgate: Run) -> None:
    first = _train(mlgate, "--name", "diabetes-rf")
    second = _train(mlgate, "--name", "diabetes-rf", "--param", "max_depth=6")
    assert (first["model_name"], first["model_version"]) == ("diabetes-rf", 1)
    assert second["model_version"] == 2

    status, out, err = mlgate("models", "alias", "diabetes-rf", "production", "1")
    assert status == 0, err
    assert out.strip() == f"diabetes-rf@production -> diabetes-rf/1 ({first['model_id']})"
    status, out, _ = mlgate("models", "versions", "diabetes-rf")
    lines = [line.split() for line in out.splitlines()]
    assert lines[0][:3] == ["VERSION", "ID", "ALIASES"]
    assert [line[:3] for line in lines[1:]] == [
        ["2", str(second["model_id"]), "-"],
        ["1", str(first["model_id"]), "production"],
    ]

    predicted = cli_json(mlgate, "predict", "diabetes-rf@production", "--row", ROW)
    assert predicted["model_id"] == first["model_id"]
    assert predicted["predictions"] == [pytest.approx(208.6, abs=0.1)]
    moved = cli_json(mlgate, "models", "alias", "diabetes-rf", "production", "2")
    assert (moved["version"], moved["previous_version"]) == (2, 1)
    after = cli_json(mlgate, "predict", "diabetes-rf@production", "--row", ROW)
    assert after["model_id"] == second["model_id"]

    status, out, err = mlgate("models", "delete", "diabetes-rf/2")
    assert status == 1 and "FAILED_PRECONDITION" in err and "force" in err
    status, out, _ = mlgate("models", "delete", "diabetes-rf/2", "--force")
    assert out.strip() == f"{second['model_id']} deleted; removed aliases: production"
    status, _, err = mlgate("predict", "diabetes-rf@production", "--row", ROW)
    assert status == 1 and "NOT_FOUND" in err and "no alias 'production'" in err
    status, _, err = mlgate("predict", "Diabetes-RF", "--row", ROW)
    assert status == 2 and "INVALID_ARGUMENT" in err


def test_metadata_and_export_to_a_file(mlgate: Run, tmp_path: Path) -> None:
    trained = _train(mlgate, "--name", "diabetes-rf")
    status, out, err = mlgate(
        "models", "update", "diabetes-rf", "--description", "README forest",
        "--tag", "team=risk", "--tag", "stage=dev",
    )  # fmt: skip
    assert status == 0, err
    shown = dict(line.split(":", 1) for line in out.splitlines())
    assert shown["version"].strip() == "diabetes-rf/1"
    assert shown["description"].strip() == "README forest"
    assert shown["tags"].strip() == "stage=dev, team=risk"
    model = cli_json(mlgate, "models", "update", "diabetes-rf/1", "--untag", "stage")
    assert model["tags"] == {"team": "risk"}
    assert set(model["feature_importances"]) == set(DIABETES_FEATURES)
    status, _, err = mlgate("models", "update", "diabetes-rf")
    assert status == 2 and "nothing to change" in err

    target = tmp_path / "out" / "forest.model"
    target.parent.mkdir()
    status, out, err = mlgate("models", "export", "diabetes-rf", "-o", str(target))
    assert status == 0, err
    assert "diabetes-rf/1" in out
    manifest = json.loads((tmp_path / "out" / "forest.model.manifest.json").read_text())
    assert manifest["format"] == "mlgate-arrays-v1"
    assert manifest["model"]["id"] == trained["model_id"]
    assert hashlib.sha256(target.read_bytes()).hexdigest() == manifest["model"]["sha256"]
    assert sorted(p.name for p in target.parent.iterdir()) == [
        "forest.model",
        "forest.model.manifest.json",
    ]


def test_dataset_uploads_are_not_replaced_by_accident(mlgate: Run, tmp_path: Path) -> None:
    path = tmp_path / "houses.csv"
    path.write_text(HOUSES_CSV)
    uploaded = cli_json(mlgate, "datasets", "upload", str(path))
    assert uploaded["sha256"] == hashlib.sha256(HOUSES_CSV.encode()).hexdigest()
    status, _, err = mlgate("datasets", "upload", str(path))
    assert status == 1 and "ALREADY_EXISTS" in err and "replace" in err
    assert cli_json(mlgate, "datasets", "upload", str(path), "--replace")["id"] == "houses"
    status, out, _ = mlgate("datasets", "delete", "houses")
    assert (status, out.strip()) == (0, "houses deleted")
    status, _, err = mlgate("datasets", "get", "houses")
    assert status == 1 and "NOT_FOUND" in err


def test_the_client_library_names_and_exports_models(client: MLGateClient, tmp_path: Path) -> None:
    one, two = (
        client.train("diabetes", "target", DIABETES_FEATURES, model_name="rf") for _ in range(2)
    )
    assert (one.model_version, two.model_version) == (1, 2)
    alias = client.set_alias("rf", "production", 1)
    assert (alias.model_id, alias.previous_version) == (one.model_id, 0)
    assert client.predict("rf@production", [DOC_ROW]).model_id == one.model_id
    assert [m.ref for m in client.model_versions("rf")] == ["rf/2", "rf/1"]
    assert [m.id for m in client.list_models(name="rf")] == [two.model_id, one.model_id]
    described = client.update_model("rf/1", description="first", set_tags={"k": "v"})
    assert (described.description, dict(described.tags), described.aliases) == (
        "first",
        {"k": "v"},
        ("production",),
    )
    with (tmp_path / "rf.model").open("wb") as file:
        exported, fmt = client.export_model("rf@production", file)
    assert (exported.id, fmt) == (one.model_id, "mlgate-arrays-v1")
    assert hashlib.sha256((tmp_path / "rf.model").read_bytes()).hexdigest() == exported.sha256

    client.delete_alias("rf", "production")
    with pytest.raises(MLGateError) as excinfo:
        client.get_model("rf@production")
    assert excinfo.value.code == "NOT_FOUND"
    assert client.delete_model("rf/1") == (one.model_id, ())
