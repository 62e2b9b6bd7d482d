"""Models and their names belong to the token that made them (server/ownership.py): others see a
model's card, the same as they see of the job that made it, may serve it, and may not take over
its name, export, update or delete it; admin may."""

from __future__ import annotations

import io

import grpc
import pytest

from mlgate.ids import model_id_for_job
from mlgate.oip import grpc_predict_v2_pb2_grpc as oip_grpc
from mlgate.oip.grpc_predict_v2_pb2 import ModelMetadataRequest
from mlgate_client import MLGateClient, PermissionDenied
from server.ownership import MODEL_CARD
from tests.support.authed import Authed
from tests.support.oip import matrix_request, readme_matrix
from tests.support.samples import DIABETES_FEATURES, DOC_ROW

SMALL = {"n_estimators": 5}


def _client(authed: Authed, holder: str) -> MLGateClient:
    return MLGateClient(authed.address, timeout=60, token=authed.tokens[holder])


def _train(client: MLGateClient, name: str, **params: int) -> tuple[str, str, int]:
    """(job id, model id, version) of a small diabetes forest named ``name``."""
    done = client.train(
        "diabetes", "target", DIABETES_FEATURES, params=SMALL | params, model_name=name
    )
    return done.job_id, done.model_id, done.model_version


def test_a_model_name_belongs_to_the_token_that_trained_it_first(authed_system: Authed) -> None:
    with _client(authed_system, "alice") as alice:
        assert _train(alice, "rf")[2] == 1
    with _client(authed_system, "bob") as bob:
        with pytest.raises(
            PermissionDenied,
            match=r"adding versions to model name 'rf' is for its owner or the admin role: it "
            r"belongs to 'alice'; token 'bob' has train",
        ):
            _train(bob, "rf")
        with pytest.raises(PermissionDenied, match=r"updating model rf/1 \(mdl_\w+\) .*'alice'"):
            bob.update_model("rf", description="mine now")
        with pytest.raises(PermissionDenied, match=r"deleting model rf/1 \(mdl_\w+\) .*'alice'"):
            bob.delete_model("rf/1")
        with pytest.raises(PermissionDenied, match="SetModelAlias needs the admin role"):
            bob.set_alias("rf", "production", 1)

    # A name is claimed when a training job naming it is accepted, before it has a version.
    with _client(authed_system, "alice") as alice:
        alice.submit_train("diabetes", "target", params=SMALL, model_name="gb")
    with (
        _client(authed_system, "bob") as bob,
        pytest.raises(PermissionDenied, match=r"model name 'gb' .* belongs to 'alice'"),
    ):
        _train(bob, "gb")

    # Admin may add a version; the owner goes on; callers of the name get the owners' versions.
    with _client(authed_system, "ops") as ops:
        assert _train(ops, "rf")[2] == 2
    with _client(authed_system, "alice") as alice:
        _job, latest, version = _train(alice, "rf", max_depth=3)
        assert version == 3
        assert alice.update_model("rf", description="alice's").description == "alice's"
    with _client(authed_system, "predictor") as predictor:
        assert predictor.predict("rf", [DOC_ROW]).model_id == latest
        assert [m.owner for m in predictor.model_versions("rf")] == ["alice", "ops", "alice"]


def _infer(authed: Authed, holder: str, name: str) -> None:
    token = (("authorization", f"Bearer {authed.tokens[holder]}"),)
    with grpc.insecure_channel(authed.address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        metadata = stub.ModelMetadata(ModelMetadataRequest(name=name), metadata=token, timeout=30)
        assert [t.name for t in metadata.inputs] == DIABETES_FEATURES
        if holder != "reader":
            request = matrix_request(name, readme_matrix(), raw=True)
            assert stub.ModelInfer(request, metadata=token, timeout=60).outputs


def test_a_non_owner_sees_one_card_of_a_job_and_its_model_serves_it_and_changes_nothing(
    authed_system: Authed,
) -> None:
    with _client(authed_system, "alice") as alice:
        job_id, model_id, _version = _train(alice, "forest")
        whole = alice.get_model(model_id).proto
    assert model_id == model_id_for_job(job_id), "anyone with the job id can name the model"
    assert whole.owner == "alice" and whole.metrics and whole.params and whole.sha256
    assert whole.dataset_id == "diabetes" and whole.estimator and whole.train_rows

    for holder in ("reader", "predictor", "bob"):
        with _client(authed_system, holder) as other:
            job = other.get_job(job_id).proto
            assert job.WhichOneof("spec") is None and not job.last_event.HasField("train_result")
            card = other.get_model(model_id).proto
            assert {f.name for f, _ in card.ListFields()} <= MODEL_CARD, holder
            assert not (card.metrics or card.params or card.dataset_id or card.estimator)
            assert not (card.dataset_sha256 or card.feature_importances or card.sha256)
            assert (card.owner, card.name, card.version) == ("alice", "forest", 1)
            assert card.features == whole.features and card.target == whole.target
            # Listings show the same card: no detail reachable through another call.
            assert {m.id: m.proto for m in other.list_models()}[model_id] == card
            assert [m.proto for m in other.model_versions("forest")] == [card]
            assert other.get_model("forest").proto == card
            _infer(authed_system, holder, "forest")
            if holder != "reader":
                assert other.predict("forest", [DOC_ROW]).model_id == model_id
                with pytest.raises(
                    PermissionDenied, match=r"exporting model forest/1 .*belongs to 'alice'"
                ):
                    other.export_model(model_id, io.BytesIO())
            if holder == "bob":
                with pytest.raises(PermissionDenied, match="updating model forest/1"):
                    other.update_model(model_id, set_tags={"stage": "mine"})
                with pytest.raises(PermissionDenied, match="deleting model forest/1"):
                    other.delete_model(model_id)

    for holder in ("auditor", "ops"):
        with _client(authed_system, holder) as seer:
            assert seer.get_model(model_id).proto == whole, holder
            assert seer.get_job(job_id).proto.last_event.train_result.metrics == whole.metrics
    with _client(authed_system, "ops") as ops:
        assert ops.export_model(model_id, io.BytesIO())[0].sha256 == whole.sha256
    with _client(authed_system, "alice") as alice:
        assert alice.export_model(model_id, io.BytesIO())[0].sha256 == whole.sha256
        assert alice.update_model(model_id, set_tags={"stage": "prod"}).tags == {"stage": "prod"}
        assert alice.delete_model(model_id)[0] == model_id
