"""Secrets in service URLs stay out of logs, client errors and job records; a malformed URL is one
line naming its variable."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import grpc
import pytest

from mlgate.urls import check_url, redact_url
from mlgate.v1 import jobs_pb2
from server.settings import GatewaySettings
from storage.s3_client import endpoint_from_env
from tests.support.gateway_calls import diabetes_request, jobs
from tests.support.redis import PrivateRedis
from tests.support.serving import clean_env, run_mlgate
from tests.support.system import gateway_settings, running_gateway

USER_SECRET = "pw-userinfo-7c1e"
QUERY_SECRET = "pw-query-93ab"


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"amqp://mlgate:{USER_SECRET}@rabbit:5672/%2F", "amqp://mlgate:***@rabbit:5672/%2F"),
        (
            f"redis://:{USER_SECRET}@redis:6379/0?password={QUERY_SECRET}&db=1",
            "redis://:***@redis:6379/0?password=***&db=1",
        ),
        (f"rediss://redis:6380/0?token={QUERY_SECRET}", "rediss://redis:6380/0?token=***"),
        (
            f"https://AKIAEXAMPLE:{USER_SECRET}@s3.example.com?X-Amz-Signature={QUERY_SECRET}",
            "https://AKIAEXAMPLE:***@s3.example.com?X-Amz-Signature=***",
        ),
        # An unescaped '#' cuts the URL inside the password: nothing after the scheme is shown.
        (f"amqp://mlgate:ab#{USER_SECRET}@rabbit/", "amqp://***"),
        ("s3://bucket/prefix", "s3://bucket/prefix"),
        # No authority: the slashes stay as written (an absolute path has three).
        ("sqlite:///var/lib/mlgate/jobs.db", "sqlite:///var/lib/mlgate/jobs.db"),
        ("sqlite://data/jobs.db", "sqlite://data/jobs.db"),
        (
            f"sqlite:///var/lib/jobs.db?password={QUERY_SECRET}",
            "sqlite:///var/lib/jobs.db?password=***",
        ),
    ],
)
def test_redact_url_hides_userinfo_query_and_fragment_secrets(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        (
            {"MLGATE_BROKER": "rabbitmq", "MLGATE_BROKER_URL": f"amqp://u:ab#{USER_SECRET}@h/"},
            "MLGATE_BROKER_URL",
        ),
        (
            {"MLGATE_BROKER": "rabbitmq", "MLGATE_RABBITMQ_URL": f"amqp://u:ab/{USER_SECRET}@h/"},
            "MLGATE_RABBITMQ_URL",
        ),
        (
            {"MLGATE_BROKER": "redis", "MLGATE_BROKER_URL": f"redis://[{USER_SECRET}"},
            "MLGATE_BROKER_URL",
        ),
        ({"MLGATE_STORE_URL": f"redis://:{USER_SECRET}#x@h/0"}, "MLGATE_STORE_URL"),
        ({"MLGATE_STORE_URL": f"postgresql://u:ab#{USER_SECRET}@h/0"}, "MLGATE_STORE_URL"),
    ],
)
def test_a_malformed_url_is_one_line_naming_the_variable(env, variable: str) -> None:
    with pytest.raises(ValueError) as caught:
        GatewaySettings.from_env(env)
    message = str(caught.value)
    assert variable in message and "\n" not in message
    assert USER_SECRET not in message and USER_SECRET[:6] not in message


def test_an_s3_endpoint_refuses_credentials_without_repeating_them() -> None:
    for endpoint in (
        f"http://AKIA:{USER_SECRET}@127.0.0.1:8333",
        f"https://s3.example.com/?X-Amz-Security-Token={QUERY_SECRET}",
    ):
        with pytest.raises(ValueError, match="MLGATE_S3_ENDPOINT_URL") as caught:
            endpoint_from_env({"MLGATE_S3_ENDPOINT_URL": endpoint})
        assert USER_SECRET not in str(caught.value) and QUERY_SECRET not in str(caught.value)
    assert check_url("X", "https://s3.example.com:443", ("http", "https")).endswith(":443")


@pytest.mark.parametrize(
    ("command", "env"),
    [
        (
            "serve",
            {"MLGATE_BROKER": "rabbitmq", "MLGATE_BROKER_URL": f"amqp://u:x#{USER_SECRET}@h/"},
        ),
        ("worker", {"MLGATE_BROKER": "redis", "MLGATE_REDIS_URL": f"redis://:x#{USER_SECRET}@h/0"}),
        (
            "serve",
            {
                "MLGATE_STORAGE_URL": "s3://bucket/prefix",
                "MLGATE_S3_ENDPOINT_URL": f"http://AKIA:{USER_SECRET}@127.0.0.1:1",
            },
        ),
    ],
)
def test_a_bad_url_stops_the_process_with_one_line_and_no_traceback(
    command: str, env: dict[str, str], tmp_path: Path
) -> None:
    done = run_mlgate(command, "--data-dir", str(tmp_path), env=clean_env(**env))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlgate: error: MLGATE_"), done.stderr
    assert USER_SECRET[:6] not in done.stderr + done.stdout


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_an_unreachable_broker_with_secrets_in_its_url_leaks_neither_secret_nor_address(
    broker: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = _dead_port()
    url = {
        "redis": f"redis://:{USER_SECRET}@127.0.0.1:{port}/0?password={QUERY_SECRET}",
        "rabbitmq": f"amqp://mlgate:{USER_SECRET}@127.0.0.1:{port}/%2F",
    }[broker]
    caplog.set_level(logging.DEBUG)
    settings = gateway_settings(
        tmp_path / "data", broker=broker, broker_url=url, publish_timeout=1.0
    )
    gateway = running_gateway(settings, embedded_workers=False)
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            with pytest.raises(grpc.RpcError) as caught:
                list(jobs(channel).Train(diabetes_request(), timeout=30))
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            told = caught.value.details() or ""
            listed = jobs(channel).ListJobs(jobs_pb2.ListJobsRequest(), timeout=10)
    finally:
        gateway.stop()
    assert "broker" in told
    (job,) = listed.jobs
    assert job.state == jobs_pb2.JOB_STATE_FAILED
    recorded = job.last_event.error.message
    assert "broker" in recorded
    for text in (told, recorded):
        assert str(port) not in text and "127.0.0.1" not in text
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert str(port) in logged, "the operator's log should say where the broker was sought"
    for text in (told, recorded, logged):
        assert USER_SECRET not in text and QUERY_SECRET not in text


@pytest.mark.parametrize("where", ["userinfo", "query"])
def test_a_lost_redis_job_store_names_the_service_only(
    where: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = PrivateRedis(tmp_path / "redis", "--requirepass", USER_SECRET).start()
    url = {
        "userinfo": f"redis://:{USER_SECRET}@127.0.0.1:{server.port}/0",
        "query": f"redis://127.0.0.1:{server.port}/0?password={USER_SECRET}",
    }[where]
    caplog.set_level(logging.DEBUG)
    gateway = running_gateway(gateway_settings(tmp_path / "data", store_url=url))
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            jobs(channel).ListJobs(jobs_pb2.ListJobsRequest(), timeout=10)  # the password works
            server.stop()
            with pytest.raises(grpc.RpcError) as caught:
                jobs(channel).ListJobs(jobs_pb2.ListJobsRequest(), timeout=30)
    finally:
        gateway.stop()
        server.stop()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    told = caught.value.details() or ""
    assert "job store" in told and str(server.port) not in told
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for text in (told, logged):
        assert USER_SECRET not in text
