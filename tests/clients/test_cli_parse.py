"""The command line's shape: global options, defaults from the environment, usage errors."""

from __future__ import annotations

import socket

import pytest

from clients.cli import build_parser, main


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


def test_no_gateway_exits_3_with_a_hint(monkeypatch, capsys) -> None:
    address = _closed_address()
    monkeypatch.setenv("MLGATE_ADDRESS", address)
    assert main(["datasets", "list"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: UNAVAILABLE: ")
    assert f"no mlgate gateway answers at {address}" in err
    assert "mlgate serve" in err


def test_serve_refuses_a_bad_broker_setting(monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLGATE_BROKER", "carrier-pigeon")
    assert main(["serve", "--port", "0"]) == 2
    assert "MLGATE_BROKER must be one of" in capsys.readouterr().err
