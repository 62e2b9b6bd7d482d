"""The model registry walked end to end over gRPC, for every storage backend (local, S3)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from mlgate.v1 import datasets_pb2, jobs_pb2, models_pb2
from tests.support.gateway_calls import (
    README_ROW,
    datasets,
    diabetes_request,
    events_of,
    jobs,
    models,
    rows,
)

# Reads a stored artifact's bytes straight from the backend: (model id, sha256) -> bytes.
ArtifactReader = Callable[[str, str], bytes]


def patients_csv(offset: int) -> bytes:
    lines = ["age,bmi,bp,s1,s2,s3,s4,s5,s6,target"]
    for i in range(80):
        values = [f"{((i * 7 + j * 3 + offset) % 17 - 8) / 100:.4f}" for j in range(9)]
        lines.append(",".join(values) + f",{100 + i + offset}")
    return "\n".join(lines).encode()


def code_of(call: Callable[..., Any], *args: Any) -> tuple[grpc.StatusCode, str]:
    """The status code and details ``call(*args)`` fails with."""
    with pytest.raises(grpc.RpcError) as excinfo:
        call(*args)
    return excinfo.value.code(), excinfo.value.details() or ""


def train_named(channel: grpc.Channel, name: str, **fields: Any) -> jobs_pb2.TrainResult:
    request = diabetes_request(model_name=name, **fields)
    events = events_of(jobs(channel).Train(request, timeout=120))
    assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED, events[-1]
    return events[-1].train_result


def predict(channel: grpc.Channel, ref: str) -> jobs_pb2.PredictResult:
    """The result of predicting the README's row with ``ref``, without the alias it went
    through (so that results through an alias and from its version compare equal); checks the
    alias named is the reference's."""
    request = jobs_pb2.PredictRequest(model_id=ref, rows=rows(README_ROW))
    done = events_of(jobs(channel).Predict(request, timeout=60))[-1]
    assert done.state == jobs_pb2.JOB_STATE_SUCCEEDED, done
    result = done.predict_result
    assert result.alias == ref.partition("@")[2], result
    result.ClearField("alias")
    return result


def get_model(channel: grpc.Channel, ref: str) -> models_pb2.Model:
    return models(channel).GetModel(models_pb2.GetModelRequest(model_id=ref)).model


def set_alias(channel: grpc.Channel, name: str, alias: str, version: int) -> int:
    request = models_pb2.SetModelAliasRequest(name=name, alias=alias, version=version)
    return models(channel).SetModelAlias(request).previous_version


def export(channel: grpc.Channel, ref: str) -> tuple[models_pb2.Model, str, bytes]:
    stream = models(channel).ExportModel(models_pb2.ExportModelRequest(model_id=ref))
    first, *rest = list(stream)
    assert not first.chunk, "the record comes first, alone"
    return first.model, first.format, b"".join(r.chunk for r in rest)


def upload(channel: grpc.Channel, dataset_id: str, data: bytes, replace: bool = False) -> str:
    message = datasets_pb2.UploadDatasetRequest(dataset_id=dataset_id, chunk=data, replace=replace)
    return datasets(channel).UploadDataset(iter([message])).dataset.sha256


def walk_the_registry(channel: grpc.Channel, stored_artifact: ArtifactReader) -> None:
    """Lineage, versions, aliases and export, as a user of one storage backend sees them."""
    # Lineage: an upload records its digest and is never silently replaced.
    first_data = patients_csv(0)
    digest = upload(channel, "patients", first_data)
    assert digest == hashlib.sha256(first_data).hexdigest()
    code, details = code_of(lambda: upload(channel, "patients", patients_csv(1)))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "replace" in details

    one = train_named(channel, "patients-rf", dataset_id="patients", params={"max_depth": 2})
    two = train_named(channel, "patients-rf", dataset_id="patients", params={"max_depth": 6})
    assert [(one.model_name, one.model_version), (two.model_name, two.model_version)] == [
        ("patients-rf", 1),
        ("patients-rf", 2),
    ]
    assert get_model(channel, one.model_id).dataset_sha256 == digest

    # Aliases: predictions through NAME@ALIAS follow the alias; NAME/VERSION never moves.
    assert set_alias(channel, "patients-rf", "production", 1) == 0
    by_version = {v: predict(channel, f"patients-rf/{v}") for v in (1, 2)}
    assert by_version[1].predictions != by_version[2].predictions
    assert predict(channel, "patients-rf@production") == by_version[1]
    assert predict(channel, "patients-rf").model_id == two.model_id, "NAME is the latest"
    assert set_alias(channel, "patients-rf", "production", 2) == 1
    assert predict(channel, "patients-rf@production") == by_version[2]
    assert predict(channel, "patients-rf/1") == by_version[1]

    # Export: the stored artifact, byte for byte, with the record that names its digest.
    record, fmt, artifact = export(channel, "patients-rf@production")
    assert (record.id, record.name, record.version, fmt) == (
        two.model_id,
        "patients-rf",
        2,
        "mlgate-arrays-v1",
    )
    assert list(record.aliases) == ["production"]
    assert hashlib.sha256(artifact).hexdigest() == record.sha256
    assert artifact == stored_artifact(record.id, record.sha256)

    # Replacing the data leaves the models' recorded digest; so does deleting it.
    replaced = upload(channel, "patients", patients_csv(1), replace=True)
    assert replaced != digest
    assert get_model(channel, "patients-rf/1").dataset_sha256 == digest
    three = train_named(channel, "patients-rf", dataset_id="patients")
    assert get_model(channel, three.model_id).dataset_sha256 == replaced
    datasets(channel).DeleteDataset(datasets_pb2.DeleteDatasetRequest(dataset_id="patients"))
    code, _ = code_of(
        lambda: datasets(channel).GetDataset(datasets_pb2.GetDatasetRequest(dataset_id="patients"))
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert get_model(channel, "patients-rf/2").dataset_sha256 == digest
    assert predict(channel, "patients-rf@production") == by_version[2], "models outlive data"
