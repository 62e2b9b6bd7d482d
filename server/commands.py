"""The server's commands on the ``mlgate`` command line: serve, gateway, worker, db upgrade and
token new.

The command line belongs to the client distribution (``mlgate_client.cli``); this module is the
server's "mlgate.commands" entry point, so the commands exist wherever the server is installed and
nowhere else. They only dispatch to the part they launch, importing it lazily: loading this
module to build the parser loads neither the server nor scikit-learn.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate_client._commands import out
from mlgate_client._input import UsageError
from mlgate_client._report import LOCAL_HOSTS
from mlgate_client.client import DEFAULT_ADDRESS
from server.token_command import add_token_arguments, cmd_token_new

if TYPE_CHECKING:
    from mlgate_client.cli import AddCommand

__all__ = ["add_commands", "cmd_db_upgrade", "cmd_gateway", "cmd_serve", "cmd_worker"]


def add_commands(commands: Any, add: AddCommand) -> None:
    """Add the server's commands to the ``mlgate`` parser's ``commands``."""
    for name, func, help in (
        ("serve", cmd_serve, "run a gateway and workers in one process (embedded broker)"),
        ("gateway", cmd_gateway, "run the gateway only; workers run separately"),
        ("worker", cmd_worker, "run a worker that consumes jobs from the broker"),
    ):
        sub = add(commands, name, func, help, server=True)
        if name != "worker":
            sub.add_argument(
                "--port", type=int, help="port to listen on (default: $MLGATE_PORT or 50051)"
            )
            sub.add_argument(
                "--host",
                help="address to listen on (default: $MLGATE_HOST or 127.0.0.1; "
                "0.0.0.0 or [::] for every interface)",
            )
        sub.add_argument("--data-dir", help="job store and storage directory ($MLGATE_DATA_DIR)")

    db = add(commands, "db", None, "manage the job store's database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = add(
        db_commands,
        "upgrade",
        cmd_db_upgrade,
        "apply the job store's pending schema migrations ($MLGATE_STORE_URL), before a rollout",
        server=True,
    )
    upgrade.add_argument("--data-dir", help="job store and storage directory ($MLGATE_DATA_DIR)")

    token = add(commands, "token", None, "make tokens for a gateway with token roles")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="COMMAND")
    add_token_arguments(
        add(
            token_commands,
            "new",
            cmd_token_new,
            "make a token: print it once, and the tokens-file line that admits it",
            server=True,
        )
    )


def _data_dir(args: argparse.Namespace) -> Path | None:
    # Storage URLs are file URIs, which need an absolute path.
    return Path(args.data_dir).expanduser().resolve() if args.data_dir else None


def _launch(run: Callable[[], None]) -> int:
    try:
        run()
    except ValueError as exc:  # a bad setting, reported before anything starts
        raise UsageError(str(exc)) from exc
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    return _run_gateway(args, embedded=True)


def cmd_gateway(args: argparse.Namespace) -> int:
    return _run_gateway(args, embedded=False)


def _run_gateway(args: argparse.Namespace, *, embedded: bool) -> int:
    from server.main import run_gateway

    return _launch(
        lambda: run_gateway(
            port=args.port,
            data_dir=_data_dir(args),
            embedded_workers=embedded,
            host=args.host,
            on_ready=lambda host, port: out(
                _next_step(host, port, embedded=embedded, env=os.environ)
            ),
        )
    )


def _next_step(host: str, port: int, *, embedded: bool, env: Mapping[str, str]) -> str:
    """Where a server listens and the command to try from a second terminal, with the settings
    that terminal needs for this gateway's TLS and tokens."""
    address = f"localhost:{port}" if host.strip("[]") in LOCAL_HOSTS else f"{host}:{port}"
    program = _program()
    command = program if address == DEFAULT_ADDRESS else f"{program} --address {address}"
    try_it = f"{command} train diabetes --target target"
    needs = _client_needs(env, program)
    where = f"listening on {address}"
    modes = []
    if env.get("MLGATE_TLS_CERT"):
        modes.append("mTLS" if env.get("MLGATE_TLS_CLIENT_CA") else "TLS")
    if env.get("MLGATE_AUTH_TOKENS_FILE"):
        modes.append("tokens")
    if modes:
        where += f" ({', '.join(modes)})"
    then = f"from a second terminal, set {needs}, then try: {try_it}" if needs else ""
    if embedded:
        return f"{where}; {then or f'try it from a second terminal: {try_it}'}"
    workers = f"start workers with `{program} worker` (same MLGATE_BROKER)"
    return f"{where}; {workers}; {then}" if needs else f"{where}; {workers}, then try: {try_it}"


def _client_needs(env: Mapping[str, str], program: str) -> str:
    """What a client of a gateway with these settings must set: "" for plaintext without tokens."""
    needs = []
    cert = env.get("MLGATE_TLS_CERT", "")
    if cert:
        ca = f"={cert}" if _self_signed(cert) else f" to the CA that signed {cert}"
        needs.append(f"MLGATE_TLS_CA{ca}")
    client_ca = env.get("MLGATE_TLS_CLIENT_CA", "") if cert else ""
    if client_ca:
        needs.append(
            f"MLGATE_TLS_CLIENT_CERT and MLGATE_TLS_CLIENT_KEY to a client certificate and key "
            f"that {client_ca} signed"
        )
    tokens = env.get("MLGATE_AUTH_TOKENS_FILE", "")
    if tokens:
        needs.append(
            "MLGATE_TOKEN to a token with the train role "
            f"(`{program} token new --role train --name NAME --append {tokens}`)"
        )
    if len(needs) < 2:
        return "".join(needs)
    return f"{', '.join(needs[:-1])} and {needs[-1]}"


def _self_signed(path: str) -> bool:
    """Whether the certificate at ``path`` signed itself: then it is its own CA."""
    try:
        from cryptography import x509

        certificate = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError, ImportError):
        return False
    return certificate.issuer == certificate.subject


def _program() -> str:
    """How a second terminal runs this mlgate: by name when PATH finds it, else by its path."""
    invoked = sys.argv[0]
    if Path(invoked).name != "mlgate":
        return "mlgate"
    found = shutil.which("mlgate")
    if found is not None and Path(found).resolve() == Path(invoked).resolve():
        return "mlgate"
    return invoked


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from server.db import upgrade_job_store

    return _launch(lambda: out(upgrade_job_store(_data_dir(args))))


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.main import main as run_worker

    return _launch(lambda: run_worker(data_dir=_data_dir(args)))
