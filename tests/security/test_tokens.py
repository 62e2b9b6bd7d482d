"""The tokens file: its format, reloading without a restart, constant-time comparison, tokens kept
out of the logs, and ``mlgate token new``."""

from __future__ import annotations

import hmac
import logging
import os
import stat
from pathlib import Path

import grpc
import pytest

from mlgate.tokens import Caller, Role, TokenFile, digest, new_token, parse_tokens, tokens_line
from mlgate_client import MLGateClient, PermissionDenied, Unauthenticated
from tests.support.authed import Authed
from tests.support.serving import clean_env, run_mlgate
from tests.support.system import gateway_settings, running_gateway


def _models(address: str, token: str | None) -> list[str]:
    with MLGateClient(address, timeout=10, token=token) as client:
        return [m.id for m in client.list_models()]


def _delete_a_model(address: str, token: str) -> None:
    with MLGateClient(address, timeout=10, token=token) as client:
        client.delete_model("mdl_" + "0" * 32)


def test_the_file_holds_hashes_roles_and_names() -> None:
    token = new_token()
    text = f"""
    # comment
    {tokens_line(token, Role.PREDICT, "alice")}
    {digest("other")} read+all   # an auditor, unnamed
    """
    (alice, auditor) = parse_tokens(text)
    assert alice.caller == Caller("alice", Role.PREDICT, False)
    assert alice.digest.decode() == digest(token) and token not in text
    assert auditor.caller == Caller(f"token-{digest('other')[:8]}", Role.READ, True)
    assert Role.ADMIN > Role.TRAIN > Role.PREDICT > Role.READ


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("abc read", "sha256"),
        (f"{digest('x')} owner", "unknown role 'owner'"),
        (f"{digest('x')} read two words", "expected"),
        (f"{digest('x')} read a/b", "names are"),
        (f"{digest('x')} read\n{digest('x')} admin", "line 2: the same token hash"),
    ],
)
def test_a_bad_line_is_refused_naming_it(line: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_tokens(line)


def test_every_entry_is_compared_in_constant_time(tmp_path: Path, monkeypatch) -> None:
    tokens = [new_token() for _ in range(5)]
    path = tmp_path / "tokens"
    path.write_text(
        "".join(tokens_line(t, Role.READ, f"n{i}") + "\n" for i, t in enumerate(tokens))
    )
    file = TokenFile(path)
    compared: list[tuple[bytes, bytes]] = []
    constant_time = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return constant_time(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the function mlgate.tokens calls
    for token, expected in ((tokens[0], "n0"), (tokens[-1], "n4"), ("mlg_unknown", None)):
        compared.clear()
        found = file.lookup(token)
        assert (found.name if found else None) == expected
        # Every entry, whichever matched, and only through hmac.compare_digest.
        assert len(compared) == len(tokens)


def test_the_file_is_read_again_when_it_changes(authed: Authed, caplog) -> None:
    newcomer = new_token()
    with pytest.raises(Unauthenticated):
        _models(authed.address, newcomer)
    line = tokens_line(newcomer, Role.READ, "newcomer")
    authed.tokens_file.write_text(authed.tokens_file.read_text() + line + "\n")
    assert _models(authed.address, newcomer) == []
    # A broken edit keeps the tokens in force and says so in the log.
    good = authed.tokens_file.read_text()
    authed.tokens_file.write_text(good + "this is not a line\n")
    with caplog.at_level(logging.ERROR):
        assert _models(authed.address, newcomer) == []
    assert any("previous tokens stay in force" in r.getMessage() for r in caplog.records)
    # Taking the line out revokes the token, without a restart.
    authed.tokens_file.write_text(good.replace(line + "\n", ""))
    with pytest.raises(Unauthenticated):
        _models(authed.address, newcomer)
    with pytest.raises(PermissionDenied, match="needs the train role"):
        _delete_a_model(authed.address, authed.tokens["predictor"])


def test_tokens_never_reach_the_log(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "tokens"
    reader, admin, stranger = new_token(), new_token(), new_token()
    path.write_text(
        tokens_line(reader, Role.READ, "reader")
        + "\n"
        + tokens_line(admin, Role.ADMIN, "ops")
        + "\n"
    )
    gateway = running_gateway(gateway_settings(tmp_path / "data", auth_tokens_file=str(path)))
    try:
        assert _models(gateway.address, admin) == []
        for token, error in ((reader, PermissionDenied), (stranger, Unauthenticated)):
            with pytest.raises(error):
                _delete_a_model(gateway.address, token)
        path.write_text(path.read_text() + "broken\n")
        with pytest.raises(Unauthenticated):
            _models(gateway.address, stranger)
    finally:
        gateway.stop()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "refused /mlgate.v1.ModelService/DeleteModel to reader" in logged
    for token in (reader, admin, stranger):
        assert token not in logged and token[4:20] not in logged


def test_without_a_tokens_file_the_gateway_is_open_and_says_so(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    gateway = running_gateway(gateway_settings(tmp_path / "data"), embedded_workers=False)
    try:
        assert _models(gateway.address, None) == []
    finally:
        gateway.stop()
    assert any("the gateway is open" in r.getMessage() for r in caplog.records)


def test_a_missing_tokens_file_stops_start_up_in_one_line(tmp_path: Path) -> None:
    done = run_mlgate(
        "serve",
        "--data-dir",
        str(tmp_path / "data"),
        env=clean_env(MLGATE_AUTH_TOKENS_FILE=str(tmp_path / "nope")),
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"mlgate: error: MLGATE_AUTH_TOKENS_FILE: cannot use {tmp_path / 'nope'}: "
        "No such file or directory"
    ]


def test_token_new_prints_the_token_once_and_the_line_to_add(tmp_path: Path) -> None:
    done = run_mlgate("token", "new", "--role", "predict", "--name", "alice", env=clean_env())
    assert done.returncode == 0, done.stderr
    token, line = done.stdout.splitlines()
    assert token.startswith("mlg_") and token not in done.stderr
    assert line == f"{digest(token)} predict alice"
    assert "only this once" in done.stderr
    tokens = tmp_path / "tokens.txt"
    done = run_mlgate(
        "token", "new", "--role", "read", "--all", "--name", "audit", "--append", str(tokens),
        env=clean_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (token,) = done.stdout.split()
    assert TokenFile(tokens).lookup(token) == Caller("audit", Role.READ, True)
    assert stat.S_IMODE(os.stat(tokens).st_mode) == 0o600
    done = run_mlgate("token", "new", "--role", "owner", "--name", "x", env=clean_env())
    assert done.returncode == 2 and "invalid choice" in done.stderr


def test_a_bearer_header_in_any_case_works_and_other_schemes_do_not(authed: Authed) -> None:
    token = authed.tokens["reader"]
    with grpc.insecure_channel(authed.address) as channel:
        call = channel.unary_unary(
            "/mlgate.v1.ModelService/ListModels",
            request_serializer=lambda m: b"",
            response_deserializer=lambda b: b,
        )
        call(b"", metadata=(("authorization", f"bearer {token}"),), timeout=10)
        with pytest.raises(grpc.RpcError) as caught:
            call(b"", metadata=(("authorization", f"Basic {token}"),), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
