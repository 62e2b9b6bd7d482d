"""The command line's shape: global options, defaults from the environment, usage errors."""

from __future__ import annotations

import importlib.metadata
import json
import socket

import pytest

from mlgate.estimators import DEFAULT_ESTIMATOR
from mlgate.estimators import ESTIMATORS as ALLOWLIST
from mlgate_client.cli import build_parser, main


def _closed_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "--address", "gw:1", "--timeout", "5", "jobs", "list"],
        ["jobs", "list", "--json", "--address", "gw:1", "--timeout", "5"],
        ["jobs", "--json", "list", "--address", "gw:1", "--timeout", "5"],
    ],
)
def test_global_options_go_before_or_after_the_command(argv) -> None:
    args = build_parser({}).parse_args(argv)
    assert (args.json, args.address, args.timeout) == (True, "gw:1", 5.0)


def test_address_defaults_to_the_environment_then_localhost() -> None:
    assert build_parser({"MLGATE_ADDRESS": "gw:7"}).parse_args(["models", "list"]).address == "gw:7"
    args = build_parser({}).parse_args(["models", "list"])
    assert (args.address, args.json, args.timeout) == ("localhost:50051", False, None)


def test_train_options() -> None:
    argv = """train diabetes --target target -f age,bmi --features bp
        --param max_depth=4 --param criterion=poisson --task regression
        --test-size 0.3 --seed 7 --estimator random_forest --detach"""
    args = build_parser({}).parse_args(argv.split())
    assert args.dataset == "diabetes" and args.target == "target"
    assert args.features == ["age,bmi", "bp"]
    assert args.param == ["max_depth=4", "criterion=poisson"]
    assert (args.task, args.test_size, args.seed, args.detach) == ("regression", 0.3, 7, True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: COMMAND"),
        (["train", "diabetes"], "--target"),
        (["train", "diabetes", "--target", "t", "--task", "clustering"], "invalid choice"),
        (["jobs"], "required: COMMAND"),
        (["jobs", "list", "--state", "done"], "invalid choice"),
        (["predict", "mdl_x", "stdin"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2(argv, message, capsys) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_help_exits_0(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("serve", "gateway", "worker", "train", "predict", "jobs", "models", "datasets"):
        assert command in out


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "mdl_x"],
        ["predict", "mdl_x", "--row", "{}", "--rows-file", "rows.json"],
        ["predict", "mdl_x", "-", "--row", "{}"],
    ],
)
def test_predict_takes_rows_exactly_one_way(argv, capsys) -> None:
    # Refused before any call: nothing listens at the address.
    assert main(["--address", _closed_address(), *argv]) == 2
    assert "give the rows one way" in capsys.readouterr().err


def test_bad_rows_and_params_are_usage_errors(tmp_path, capsys) -> None:
    address = _closed_address()
    assert main(["--address", address, "predict", "mdl_x", "--row", "[1]"]) == 2
    assert "--row 1 row 1 is not a JSON object" in capsys.readouterr().err
    assert main(["--address", address, "predict", "mdl_x", "--rows-file", "nope.json"]) == 2
    assert "cannot read nope.json" in capsys.readouterr().err
    argv = ["--address", address, "train", "diabetes", "--target", "t", "--param", "depth"]
    assert main(argv) == 2
    assert "--param 'depth' is not name=value" in capsys.readouterr().err


def test_no_gateway_exits_3_after_waiting_with_a_note_and_a_hint(monkeypatch, capsys) -> None:
    address = _closed_address()
    monkeypatch.setenv("MLGATE_ADDRESS", address)
    monkeypatch.delenv("MLGATE_BROKER", raising=False)
    # --timeout bounds the wait for a gateway as it bounds each call.
    assert main(["--timeout", "1", "datasets", "list"]) == 3
    note, error, hint, tls_hint = capsys.readouterr().err.splitlines()
    assert note == f"waiting for the gateway at {address}…"
    assert error == f"error: UNAVAILABLE: no mlgate gateway answers at {address} (waited 1s)"
    port = address.rsplit(":", 1)[1]
    assert hint.startswith(f"hint: start one with `mlgate serve --port {port}`")
    assert f"`mlgate gateway --port {port}` and `mlgate worker`" in hint
    assert tls_hint.startswith("hint: a gateway that serves TLS needs --tls")


def test_the_wait_for_a_gateway_is_a_setting(monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLGATE_CONNECT_TIMEOUT", "0.7")
    assert main(["--address", _closed_address(), "models", "list"]) == 3
    assert "(waited 0.7s)" in capsys.readouterr().err
    monkeypatch.setenv("MLGATE_CONNECT_TIMEOUT", "soon")
    assert main(["--address", _closed_address(), "models", "list"]) == 2
    assert "MLGATE_CONNECT_TIMEOUT: 'soon' is not a number" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("broker", "host", "wanted", "unwanted"),
    [
        ("", "127.0.0.1", "mlgate serve", "MLGATE_BROKER="),
        ("rabbitmq", "127.0.0.1", "mlgate gateway", "mlgate serve"),
        ("redis", "localhost", "MLGATE_BROKER=redis for both", "mlgate serve"),
        ("", "gateway.invalid", "check the address", "mlgate serve"),
    ],
)
def test_the_no_gateway_hint_fits_the_situation(
    broker, host, wanted, unwanted, monkeypatch, capsys
) -> None:
    """A distributed setup (MLGATE_BROKER set) is told about gateway and workers, not `serve`;
    a remote address is told to check the address, not to start a local gateway."""
    monkeypatch.setenv("MLGATE_BROKER", broker)
    port = _closed_address().rsplit(":", 1)[1]
    argv = ["--json", "--timeout", "0.5", "--address", f"{host}:{port}", "models", "list"]
    assert main(argv) == 3
    error = json.loads(capsys.readouterr().err.splitlines()[-1])["error"]
    assert (error["code"], error["field"]) == ("UNAVAILABLE", None)
    assert wanted in error["hints"][0] and unwanted not in error["hints"][0]


def test_version_is_the_installed_package_version(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"mlgate {importlib.metadata.version('mlgate-client')}\n"


def test_train_help_lists_the_estimators_and_explains_the_task(capsys) -> None:
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in ALLOWLIST:
        assert name in text
    assert "linear (regression only)" in text
    assert "logistic_regression (classification only)" in text
    assert f"default: {DEFAULT_ESTIMATOR}" in text
    assert "default: inferred from the target" in text


def test_usage_errors_are_json_with_json(capsys) -> None:
    assert main(["--json", "train", "diabetes"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    error = json.loads(captured.err)["error"]
    assert error["code"] == "INVALID_ARGUMENT" and error["field"] is None
    assert "the following arguments are required: --target" in error["message"]
    argv = ["--address", _closed_address(), "predict", "mdl_x", "--json"]
    assert main(argv) == 2
    assert "give the rows one way" in json.loads(capsys.readouterr().err)["error"]["message"]


def test_serve_refuses_a_bad_broker_setting(monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLGATE_BROKER", "carrier-pigeon")
    assert main(["serve", "--port", "0"]) == 2
    assert "MLGATE_BROKER must be one of" in capsys.readouterr().err
