"""Ids, settings and object-store keys: the guards every other component relies on."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest

from brokers.settings import BrokerSettings
from mlgate.errors import InvalidField, NotFound
from mlgate.failures import CODES, Backends, Failure, public
from mlgate.ids import check_dataset_id, check_job_id, check_model_id, model_id_for_job, new_job_id
from mlgate.urls import redact_url
from server.settings import GatewaySettings
from storage.base import check_key
from storage.local import LocalObjectStore
from workers.settings import WorkerSettings


def test_ids_round_trip_and_refuse_anything_path_like() -> None:
    job_id = new_job_id()
    assert check_job_id(job_id) == job_id
    assert check_model_id(model_id_for_job(job_id)) == "mdl_" + job_id[4:]
    for bad in ("", "job_../../x", "job_" + "g" * 32, job_id + "/", " " + job_id):
        with pytest.raises(InvalidField):
            check_job_id(bad)
    for bad in ("..", "a/b", "A", "-x", "x" * 65, "a b", "%2e%2e"):
        with pytest.raises(InvalidField):
            check_dataset_id(bad)


@pytest.mark.parametrize("key", ["../x", "/abs", "a/../../b", "A B", "a//b", "a/./b", ""])
def test_storage_keys_are_checked(key: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        check_key(key)
    with pytest.raises(ValueError):
        LocalObjectStore(tmp_path).put(key, b"x")


def test_settings_from_env_and_overrides(tmp_path: Path) -> None:
    env = {
        "MLGATE_BROKER": "rabbitmq",
        "MLGATE_PORT": "6000",
        "MLGATE_DATA_DIR": str(tmp_path),
        "MLGATE_BROKER_URL": "amqp://user:s3cret@rabbit:5672/%2F",
    }
    settings = GatewaySettings.from_env(env, data_dir=tmp_path / "override")
    assert settings.broker.kind == "rabbitmq" and settings.port == 6000
    assert settings.data_dir == tmp_path / "override"
    # An absolute path after sqlite://, three slashes, as written and as the start-up line shows.
    database = tmp_path / "override" / "jobs.db"
    assert settings.store_url == f"sqlite://{database}" == f"sqlite:///{str(database)[1:]}"
    assert f"store=sqlite://{database} " in settings.describe()
    assert settings.storage_url.startswith("file://")
    worker = WorkerSettings.from_env(env, data_dir=tmp_path / "override")
    assert worker.broker == settings.broker and worker.storage_url == settings.storage_url
    # Secrets never reach logs or reprs, whichever part's settings hold them.
    for part in (settings, worker, settings.broker):
        assert "s3cret" not in part.describe()
        assert "s3cret" not in repr(part)
    assert "amqp://user:***@rabbit:5672/%2F" in repr(settings)
    assert redact_url("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    for read in (GatewaySettings.from_env, WorkerSettings.from_env, BrokerSettings.from_env):
        with pytest.raises(ValueError, match="MLGATE_BROKER"):
            read({"MLGATE_BROKER": "kafka"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1073741824", 2**30), ("512MiB", 512 * 2**20), ("2 GiB", 2 * 2**30), ("1.5GiB", 3 * 2**29)],
)
def test_the_training_memory_limit_reads_bytes_and_units(text: str, expected: int) -> None:
    settings = WorkerSettings.from_env({"MLGATE_TRAIN_MEMORY_LIMIT": text})
    assert settings.train_memory_limit == expected


@pytest.mark.parametrize("text", ["lots", "12", "-1GiB", "2GB", "1 PiB"])
def test_a_training_memory_limit_that_is_not_a_size_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"MLGATE_TRAIN_MEMORY_LIMIT.*at least 1 MiB"):
        WorkerSettings.from_env({"MLGATE_TRAIN_MEMORY_LIMIT": text})


def test_training_limits_have_generous_defaults() -> None:
    settings = WorkerSettings.from_env({})
    assert settings.train_timeout == 3600
    assert settings.train_memory_limit >= 2**28  # half of the machine's memory
    with pytest.raises(ValueError, match="MLGATE_TRAIN_TIMEOUT"):
        WorkerSettings.from_env({"MLGATE_TRAIN_TIMEOUT": "0"})


def test_one_mapping_tells_domain_errors_as_written_and_hides_unexpected_ones() -> None:
    backends = Backends("memory", "sqlite", "local directory")
    assert public(NotFound("model x does not exist"), backends, "test") == Failure(
        "NOT_FOUND", "model x does not exist"
    )
    told = public(ZeroDivisionError("boom"), backends, "test")
    assert told.code == "INTERNAL"
    assert re.fullmatch(
        r"internal error \(ref [0-9a-f]{12}\); mlgate's logs say why; tell its operator",
        told.message,
    ), told.message
    assert {code for code in CODES if code not in grpc.StatusCode.__members__} == set()
