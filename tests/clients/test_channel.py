"""How the client reads an address of several gateways, and which calls it may move between them."""

from __future__ import annotations

import json

import pytest
from google.protobuf import descriptor_pool

from mlgate.oip import grpc_predict_v2_pb2  # noqa: F401 (registers the OIP's services)
from mlgate.v1 import datasets_pb2, jobs_pb2, models_pb2, status_pb2  # noqa: F401
from mlgate_client._channel import RETRIED, channel_target, service_config
from mlgate_client.cli import main


def _options(address: str) -> dict[str, object]:
    return dict(channel_target(address)[1])


def test_one_address_or_a_grpc_target_is_used_as_given() -> None:
    for address in ("localhost:50051", "dns:///gateways:50051", "ipv4:10.0.0.1:1,10.0.0.2:1"):
        assert channel_target(address)[0] == address
        assert "grpc.default_authority" not in _options(address)


def test_a_list_becomes_the_addresses_it_resolves_to_named_by_its_first() -> None:
    target, _ = channel_target("localhost:50051, 127.0.0.1:50052")
    assert target == "ipv4:127.0.0.1:50051,127.0.0.1:50052"
    assert _options("localhost:50051,127.0.0.1:50052")["grpc.default_authority"] == (
        "localhost:50051"
    )
    assert channel_target("[::1]:7,[::1]:8")[0] == "ipv6:[::1]:7,[::1]:8"


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("gw1,gw2:50051", "gateway address 'gw1': give HOST:PORT"),
        ("gw1:50051,gw2:port", "gateway address 'gw2:port': give HOST:PORT"),
        ("localhost:1,no-such-host.invalid:2", "gateway address no-such-host.invalid:2: "),
    ],
)
def test_a_list_that_cannot_be_used_says_which_entry(address: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        channel_target(address)


def test_the_cli_refuses_a_bad_list_as_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--address", "gw1,gw2", "jobs", "list"]) == 2
    assert "gateway address 'gw1': give HOST:PORT" in capsys.readouterr().err


def test_round_robin_and_retries_only_where_a_second_attempt_changes_nothing() -> None:
    config = json.loads(str(_options("localhost:1")["grpc.service_config"]))
    assert config == service_config()
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    (method_config,) = config["methodConfig"]
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    retried = {(n["service"], n["method"]) for n in method_config["name"]}
    assert retried == {(s, m) for s, methods in RETRIED.items() for m in methods}
    # Every name is a real method: a misspelt one would silently never be retried.
    pool = descriptor_pool.Default()
    for service, method in retried:
        assert pool.FindServiceByName(service).FindMethodByName(method) is not None
    # A submission may have been queued by a gateway that died taking it; an upload or a
    # delete may have been done: none of them is sent twice.
    never = {"Train", "Predict", "UploadDataset", "DeleteDataset", "DeleteModel"}
    assert not {m for _, m in retried} & never
