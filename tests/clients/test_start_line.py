"""The gateway's own "try it" line names what a client of it must set: the CA to trust, the client
certificate an mTLS gateway wants, a token where tokens are on; followed as printed, it works."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from server.commands import _self_signed
from tests.support.certs import Authority
from tests.support.serving import clean_env, run_mlgate, serve_process


def test_the_try_it_line_of_an_mtls_gateway_with_tokens_names_every_setting(
    tmp_path: Path,
) -> None:
    ca = Authority(tmp_path / "pki")
    server, client = ca.issue("gateway", server=True), ca.issue("alice", server=False)
    tokens = tmp_path / "tokens.txt"
    tokens.touch()
    env = clean_env(
        MLGATE_TLS_CERT=str(server.cert),
        MLGATE_TLS_KEY=str(server.key),
        MLGATE_TLS_CLIENT_CA=str(ca.cert),
        MLGATE_AUTH_TOKENS_FILE=str(tokens),
    )
    with serve_process(tmp_path, env=env) as served:
        assert served.process.stdout is not None
        line = served.process.stdout.readline().rstrip("\n")
        step = re.fullmatch(
            rf"listening on localhost:{served.port} \(mTLS, tokens\); from a second terminal, set "
            rf"MLGATE_TLS_CA to the CA that signed {re.escape(str(server.cert))}, "
            rf"MLGATE_TLS_CLIENT_CERT and MLGATE_TLS_CLIENT_KEY to a client certificate and key "
            rf"that {re.escape(str(ca.cert))} signed and MLGATE_TOKEN to a token with the train "
            rf"role \(`(?P<token>[^`]+)`\), then try: (?P<try>.+)",
            line,
        )
        assert step, line
        # Followed as printed (NAME being the caller's to choose): the token, then the command.
        token_command = shlex.split(step["token"].replace("NAME", "alice"))
        made = run_mlgate(*token_command[1:], env=clean_env())
        assert made.returncode == 0, made.stderr
        client_env = clean_env(
            MLGATE_TLS_CA=str(ca.cert),
            MLGATE_TLS_CLIENT_CERT=str(client.cert),
            MLGATE_TLS_CLIENT_KEY=str(client.key),
            MLGATE_TOKEN=made.stdout.strip(),
        )
        trained = run_mlgate(*shlex.split(step["try"])[1:], env=client_env)
    assert trained.returncode == 0, trained.stderr
    assert re.search(r"^model: +mdl_[0-9a-f]{32}$", trained.stdout, re.M), trained.stdout


def test_a_self_signed_certificate_is_its_own_ca(tmp_path: Path) -> None:
    ca = Authority(tmp_path / "pki")
    assert _self_signed(str(ca.cert))
    assert not _self_signed(str(ca.issue("gateway", server=True).cert))
    assert not _self_signed(str(tmp_path / "missing.pem"))
