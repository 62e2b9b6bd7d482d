"""Checking an artifact out of process (``python -m workers.formats.verify``), as a process that
does not load scikit-learn (the gateway, before it exports a model) can: the verdict a worker
would give, through the same error mapping."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
from sklearn.datasets import load_iris

from storage.models import ARRAYS
from tests.support.artifacts import forest_sharing_one_tree
from workers.estimators import build
from workers.formats import arrays
from workers.formats.verify import verdict


def _gradient_boosting() -> tuple[Any, list[str]]:
    X, y = load_iris(return_X_y=True, as_frame=True)
    model, _ = build("gradient_boosting", "classification", {"n_estimators": 3}, 0)
    return model.fit(X, y), list(X.columns)


def _request(features: list[str], max_bytes: int = 2**29) -> dict[str, Any]:
    return {"model_id": "mdl_x", "format": ARRAYS, "features": features, "max_bytes": max_bytes}


def test_a_sound_model_is_ok_and_a_crafted_one_is_data_loss_naming_why() -> None:
    model, features = _gradient_boosting()
    assert verdict(_request(features), arrays.encode(model)) == {"code": "OK"}
    model.init_.class_prior_, model.init_.classes_, model.init_.n_classes_ = (
        np.array([1.0]),
        np.array([0.0]),
        1,
    )
    assert verdict(_request(features), arrays.encode(model)) == {
        "code": "DATA_LOSS",
        "message": "model mdl_x is not a valid model: init_'s classes disagree with the model's; "
        "it was not loaded",
    }


def test_a_model_past_the_limit_is_resource_exhausted() -> None:
    artifact, features = forest_sharing_one_tree(1)
    answer = verdict(_request(features, max_bytes=300 * 1024), artifact)
    assert answer["code"] == "RESOURCE_EXHAUSTED"
    assert "MLGATE_MAX_MODEL_BYTES" in answer["message"]


def test_the_command_reads_the_request_and_the_bytes_and_answers_one_line() -> None:
    model, features = _gradient_boosting()
    model.init_.n_outputs_ = 0
    head = json.dumps(_request(features)).encode() + b"\n"
    done = subprocess.run(
        [sys.executable, "-m", "workers.formats.verify"],
        input=head + arrays.encode(model),
        capture_output=True,
        check=True,
        timeout=120,
    )
    answer = json.loads(done.stdout)
    assert answer["code"] == "DATA_LOSS"
    assert "init_ does not have exactly one output" in answer["message"]
