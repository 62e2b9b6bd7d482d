"""The ``mlgate`` command line: run the server parts, and drive a gateway through MLGateClient.

Exit status: 0 success; 1 an error (a failed or cancelled job, NOT_FOUND, INTERNAL, ...);
2 a usage error or INVALID_ARGUMENT (from the gateway or a job's error); 3 UNAVAILABLE (no
gateway at the address, or its broker or storage is down); 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, Protocol

from mlgate_client._commands import (
    cmd_datasets_delete,
    cmd_datasets_get,
    cmd_datasets_list,
    cmd_datasets_upload,
    cmd_jobs_cancel,
    cmd_jobs_get,
    cmd_jobs_list,
    cmd_jobs_watch,
    cmd_models_delete,
    cmd_models_get,
    cmd_models_list,
    cmd_predict,
    cmd_status,
    cmd_train,
    err,
)
from mlgate_client._dataset_commands import cmd_datasets_download
from mlgate_client._drift import add_drift_command
from mlgate_client._input import UsageError
from mlgate_client._job_arguments import model_argument as _model_argument
from mlgate_client._job_arguments import predict_arguments, train_arguments
from mlgate_client._registry_commands import (
    cmd_models_alias,
    cmd_models_export,
    cmd_models_update,
    cmd_models_versions,
)
from mlgate_client._report import Failure, report
from mlgate_client._score_command import add_score_command
from mlgate_client._search_command import add_search_command
from mlgate_client._security import tls_from_env, token_from_env
from mlgate_client._shadow import add_compare_command
from mlgate_client._worker_commands import cmd_workers
from mlgate_client.client import DEFAULT_ADDRESS, MLGateClient
from mlgate_client.errors import MLGateError

__all__ = [
    "COMMANDS_GROUP",
    "EXIT_CODES",
    "GATEWAY_WAIT",
    "AddCommand",
    "build_parser",
    "exit_code",
    "main",
]

# The one table from a status code name to the exit status; any other code exits 1.
EXIT_CODES = {"INVALID_ARGUMENT": 2, "UNAVAILABLE": 3}
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# Seconds a client command waits for a gateway that is not answering yet (one just started),
# unless MLGATE_CONNECT_TIMEOUT says otherwise; --timeout bounds it too.
GATEWAY_WAIT = 30.0

Command = Callable[[argparse.Namespace, MLGateClient], int]
ServerCommand = Callable[[argparse.Namespace], int]
# Other distributions add commands through this entry-point group: the server's (serve, gateway,
# worker, token) come with it, so a client-only install has the client commands alone. Each entry
# point is a function ``add_commands(commands, add)`` that calls ``add`` once per command.
COMMANDS_GROUP = "mlgate.commands"


class AddCommand(Protocol):
    """Adds command ``name`` to ``group`` (a subparsers action) and returns its parser. ``func``
    runs it: with a client, or with the arguments alone when ``server`` (it connects nowhere)."""

    def __call__(
        self,
        group: Any,
        name: str,
        func: Command | ServerCommand | None,
        help: str,
        server: bool = False,
    ) -> argparse.ArgumentParser: ...


def _installed_commands() -> list[Callable[[Any, AddCommand], None]]:
    """The ``add_commands`` functions of the installed distributions, by entry-point name."""
    # By name: a distribution found twice on the path (a stale copy) adds its commands once.
    found = {e.name: e for e in importlib.metadata.entry_points(group=COMMANDS_GROUP)}
    return [found[name].load() for name in sorted(found)]


def exit_code(error: MLGateError) -> int:
    return EXIT_CODES.get(error.code, 1)


# The parser


class _ParseError(Exception):
    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class _Parser(argparse.ArgumentParser):
    """Raises on a usage error instead of exiting, so ``--json`` can report it as JSON."""

    def error(self, message: str) -> NoReturn:
        raise _ParseError(self, message)


def _version() -> str:
    try:
        return importlib.metadata.version("mlgate-client")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The whole command line; ``env`` supplies MLGATE_ADDRESS's default."""
    # The global options are accepted before or after the command; SUPPRESS keeps a subcommand's
    # absent copy from overwriting one given before it.
    common = _Parser(add_help=False)
    common.add_argument("--address", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument(
        "--tls", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    common.add_argument("--token", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    parser = _Parser(
        prog="mlgate", description="Train and use scikit-learn models through an mlgate gateway."
    )
    parser.add_argument("--version", action="version", version=f"mlgate {_version()}")
    parser.add_argument(
        "--address",
        default=env.get("MLGATE_ADDRESS") or DEFAULT_ADDRESS,
        help="gateway host:port, or several comma-separated (default: $MLGATE_ADDRESS or "
        "%(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds allowed for each short call"
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="connect over TLS ($MLGATE_TLS; implied by $MLGATE_TLS_CA, trusted CA file, and "
        "$MLGATE_TLS_CLIENT_CERT / $MLGATE_TLS_CLIENT_KEY, a client certificate for mTLS)",
    )
    parser.add_argument(
        "--token",
        help="bearer token for a gateway with token roles (default: $MLGATE_TOKEN, which "
        "unlike a flag does not show in the process list)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        group: Any, name: str, func: Command | ServerCommand | None, help: str, server: bool = False
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(
            name, help=help, description=help, parents=[common]
        )
        if func is not None:
            sub.set_defaults(func=func, server=server)
        return sub

    for add_commands in _installed_commands():
        add_commands(commands, add)

    train_arguments(add(commands, "train", cmd_train, "train a model and wait for it"))
    predict_arguments(add(commands, "predict", cmd_predict, "predict with a model"))
    add_score_command(commands, add)
    add_search_command(commands, add)

    jobs = add(commands, "jobs", None, "list, inspect, watch and cancel jobs")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="COMMAND")
    listing = add(jobs_commands, "list", cmd_jobs_list, "list jobs, newest first")
    listing.add_argument(
        "--kind", choices=["train", "predict", "search", "score", "trial", "shard"]
    )
    listing.add_argument(
        "--state", choices=["queued", "running", "succeeded", "failed", "cancelled"]
    )
    listing.add_argument(
        "--parent",
        default="",
        metavar="JOB_ID",
        help="only the trials or shards of this search or scoring job (hidden otherwise)",
    )
    listing.add_argument(
        "--limit", type=int, default=50, help="at most N jobs; 0 for all (default 50)"
    )
    add(jobs_commands, "get", cmd_jobs_get, "show a job").add_argument("job_id")
    watch = add(jobs_commands, "watch", cmd_jobs_watch, "print a job's events until it ends")
    watch.add_argument("job_id")
    watch.add_argument("--after-seq", type=int, default=0, help="skip events up to this seq")
    add(jobs_commands, "cancel", cmd_jobs_cancel, "cancel a job").add_argument("job_id")

    models = add(commands, "models", None, "list, inspect, name, export and delete models")
    models_commands = models.add_subparsers(dest="models_command", required=True, metavar="COMMAND")
    listing = add(models_commands, "list", cmd_models_list, "list models, newest first")
    listing.add_argument("--name", help="only this name's versions, highest first")
    _model_argument(add(models_commands, "get", cmd_models_get, "show a model"))
    delete = add(models_commands, "delete", cmd_models_delete, "delete a model")
    _model_argument(delete)
    delete.add_argument(
        "--force", action="store_true", help="also remove the aliases that point at it"
    )
    versions = add(models_commands, "versions", cmd_models_versions, "list a name's versions")
    versions.add_argument("name")
    alias = add(
        models_commands,
        "alias",
        cmd_models_alias,
        "point NAME@ALIAS at a version, or at weighted versions (3:90 4:10); none: show it",
    )
    alias.add_argument("name")
    alias.add_argument("alias")
    alias.add_argument("targets", nargs="*", metavar="VERSION[:WEIGHT]")
    alias.add_argument(
        "--shadow", type=int, default=0, metavar="VERSION", help="mirror its requests here"
    )
    alias.add_argument("--delete", action="store_true", help="remove the alias")
    update = add(models_commands, "update", cmd_models_update, "set description and tags")
    _model_argument(update, "model")
    update.add_argument("--description")
    update.add_argument("--tag", action="append", metavar="KEY=VALUE", help="repeatable")
    update.add_argument("--untag", action="append", metavar="KEY", help="repeatable")
    export = add(models_commands, "export", cmd_models_export, "save a model's artifact")
    _model_argument(export, "model")
    export.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="artifact file; manifest beside it"
    )
    add_compare_command(models_commands, add)
    add_drift_command(models_commands, add)

    add(commands, "status", cmd_status, "show the gateway's dependencies, workers and queues")
    add(commands, "workers", cmd_workers, "list the workers alive: host, pid, jobs, heartbeat")

    datasets = add(commands, "datasets", None, "upload, list and inspect datasets")
    datasets_commands = datasets.add_subparsers(
        dest="datasets_command", required=True, metavar="COMMAND"
    )
    upload = add(datasets_commands, "upload", cmd_datasets_upload, "upload a CSV or Parquet file")
    upload.add_argument("file")
    upload.add_argument("--id", help="dataset id (default: the file name without its extension)")
    upload.add_argument(
        "--replace", action="store_true", help="replace the data of an existing dataset"
    )
    upload.add_argument(
        "--delimiter",
        default="",
        help="the CSV's delimiter: ',' ';' '|' or 'tab' (default: detected from the file)",
    )
    upload.add_argument(
        "--format",
        default="",
        choices=["csv", "parquet"],
        help="the file's format (default: detected; a Parquet file starts with PAR1)",
    )
    add(datasets_commands, "list", cmd_datasets_list, "list datasets")
    add(datasets_commands, "get", cmd_datasets_get, "show a dataset").add_argument("dataset_id")
    delete_dataset = add(datasets_commands, "delete", cmd_datasets_delete, "delete a dataset")
    delete_dataset.add_argument("dataset_id")
    download = add(
        datasets_commands, "download", cmd_datasets_download, "download a dataset's file"
    )
    download.add_argument("dataset_id")
    download.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="where to write it (CSV or Parquet)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        # Whoever read the output has gone (`mlgate jobs list | head -1`): stop quietly.
        _drop_stdout()
        return 0


def _main(argv: list[str]) -> int:
    parser = build_parser(os.environ)
    try:
        args = parser.parse_args(argv)
    except _ParseError as exc:
        options = argv[: argv.index("--")] if "--" in argv else argv
        if "--json" in options:
            report(Failure("INVALID_ARGUMENT", f"{exc.parser.prog}: {exc.message}"), True)
        else:
            exc.parser.print_usage(sys.stderr)
            err(f"{exc.parser.prog}: error: {exc.message}")
        return EXIT_USAGE
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    try:
        if args.server:
            return int(args.func(args))
        with _client(args, os.environ) as client:
            return int(args.func(args, client))
    except UsageError as exc:
        if args.json:
            report(Failure("INVALID_ARGUMENT", str(exc)), True)
        else:
            err(f"mlgate: error: {exc}")
        return EXIT_USAGE
    except MLGateError as exc:
        report(Failure.of(exc, args.address, os.environ), args.json)
        return exit_code(exc)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise
    except OSError as exc:
        if args.json:
            report(Failure("UNKNOWN", str(exc)), True)
        else:
            err(f"error: {exc}")
        return 1


def _client(args: argparse.Namespace, env: Mapping[str, str]) -> MLGateClient:
    """The client the global options and the environment describe."""
    try:
        tls = tls_from_env(env, tls=args.tls)
        return MLGateClient(
            args.address,
            timeout=args.timeout,
            tls=tls or False,
            token=args.token or token_from_env(env),
            connect_timeout=_gateway_wait(env, args.timeout),
            on_wait=lambda address: err(f"waiting for the gateway at {address}…"),
        )
    except ValueError as exc:  # an unreadable or half-given TLS file
        raise UsageError(str(exc)) from exc


def _gateway_wait(env: Mapping[str, str], timeout: float | None) -> float:
    text = env.get("MLGATE_CONNECT_TIMEOUT", "")
    try:
        wait = float(text) if text else GATEWAY_WAIT
    except ValueError:
        raise UsageError(f"MLGATE_CONNECT_TIMEOUT: {text!r} is not a number of seconds") from None
    return min(wait, timeout) if timeout else wait


def _drop_stdout() -> None:
    # Python flushes stdout once more on exit; aim it at /dev/null so that cannot fail as well.
    # (An in-process caller's capture has no file descriptor: nothing to do then.)
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
