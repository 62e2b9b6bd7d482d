"""A job records the token that submitted it; other callers see it without its inputs and results
unless their token is admin or +all, and only admin may cancel it."""

from __future__ import annotations

import pytest

from mlgate.v1 import jobs_pb2
from mlgate_client import MLGateClient, PermissionDenied
from tests.support.authed import Authed
from tests.support.samples import DIABETES_FEATURES, DOC_ROW


def _client(authed: Authed, holder: str) -> MLGateClient:
    return MLGateClient(authed.address, timeout=30, token=authed.tokens[holder])


def test_owner_only_reads_of_job_inputs_and_results(authed_system: Authed) -> None:
    with _client(authed_system, "alice") as alice:
        trained = alice.train("diabetes", "target", DIABETES_FEATURES, params={"n_estimators": 5})
        predicted = alice.predict(trained.model_id, [DOC_ROW])
        train_job, predict_job = trained.job_id, predicted.job_id
        mine = alice.get_job(predict_job)
    assert mine.owner == "alice"
    assert mine.proto.predict.rows and mine.proto.last_event.predict_result.predictions

    for holder in ("bob", "reader"):
        with _client(authed_system, holder) as other:
            for job_id in (train_job, predict_job):
                job = other.get_job(job_id).proto
                assert job.owner == "alice" and job.state == jobs_pb2.JOB_STATE_SUCCEEDED
                assert job.WhichOneof("spec") is None, holder
                assert job.last_event.WhichOneof("result") is None, holder
            listed = {job.id: job.proto for job in other.list_jobs()}
            assert listed[predict_job].WhichOneof("spec") is None
            events = list(other.watch(predict_job))
            assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
            assert all(e.WhichOneof("result") is None for e in events)

    for holder in ("auditor", "ops"):
        with _client(authed_system, holder) as seer:
            job = seer.get_job(predict_job).proto
            assert job.predict.rows, holder
            assert list(seer.watch(predict_job))[-1].predict_result.predictions, holder


def test_only_the_owner_or_an_admin_cancels_a_job(authed_system: Authed) -> None:
    with _client(authed_system, "alice") as alice:
        first = alice.submit_train(
            "diabetes", "target", params={"n_estimators": 400, "max_depth": 12}
        )
        second = alice.submit_train(
            "diabetes", "target", params={"n_estimators": 400, "max_depth": 12}
        )
    with (
        _client(authed_system, "bob") as bob,
        pytest.raises(PermissionDenied, match=r"cancelling job \w+ is for its owner or the admin"),
    ):
        bob.cancel_job(first)
    with _client(authed_system, "alice") as alice:
        assert alice.cancel_job(first).state in ("cancelled", "succeeded")
    with _client(authed_system, "ops") as ops:
        assert ops.cancel_job(second).state in ("cancelled", "succeeded")
