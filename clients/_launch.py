"""The server commands (serve, gateway, worker): the CLI only dispatches to the part it
launches, importing it lazily so client commands never load the server or scikit-learn."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from clients._commands import out
from clients._input import UsageError
from clients._report import LOCAL_HOSTS
from clients.client import DEFAULT_ADDRESS

__all__ = ["cmd_gateway", "cmd_serve", "cmd_worker"]


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
            on_ready=lambda host, port: out(_next_step(host, port, embedded=embedded)),
        )
    )


def _next_step(host: str, port: int, *, embedded: bool) -> str:
    """Where a server listens and the command to try from a second terminal."""
    address = f"localhost:{port}" if host.strip("[]") in LOCAL_HOSTS else f"{host}:{port}"
    program = _program()
    command = program if address == DEFAULT_ADDRESS else f"{program} --address {address}"
    try_it = f"{command} train diabetes --target target"
    if embedded:
        return f"listening on {address}; try it from a second terminal: {try_it}"
    return (
        f"listening on {address}; start workers with `{program} worker` (same MLGATE_BROKER), "
        f"then try: {try_it}"
    )


def _program() -> str:
    """How a second terminal runs this mlgate: by name when PATH finds it, else by its path."""
    invoked = sys.argv[0]
    if Path(invoked).name != "mlgate":
        return "mlgate"
    found = shutil.which("mlgate")
    if found is not None and Path(found).resolve() == Path(invoked).resolve():
        return "mlgate"
    return invoked


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.main import main as run_worker

    return _launch(lambda: run_worker(data_dir=_data_dir(args)))
