"""``mlgate token new``: make a token, show it once, and give the tokens-file line that admits it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mlgate.tokens import Role, new_token, tokens_line
from mlgate_client._commands import err, out
from mlgate_client._format import to_json
from mlgate_client._input import UsageError

__all__ = ["add_token_arguments", "cmd_token_new"]


def add_token_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--role",
        required=True,
        choices=[str(r) for r in Role],
        help="read (get, list, watch, status), predict (+ Predict), train (+ Train, "
        "UploadDataset, CancelJob), admin (+ deleting models and datasets, moving aliases)",
    )
    parser.add_argument("--name", required=True, help="who holds it; jobs record this name")
    parser.add_argument(
        "--all",
        action="store_true",
        help="let it see every caller's job inputs and results, not only its own",
    )
    parser.add_argument(
        "--append",
        metavar="FILE",
        help="add the line to this tokens file and print only the token",
    )


def cmd_token_new(args: argparse.Namespace) -> int:
    token = new_token()
    try:
        line = tokens_line(token, Role.named(args.role), args.name, sees_all_jobs=args.all)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.append:
        _append(Path(args.append), line)
    if args.json:
        out(to_json({"token": token, "line": line, "role": args.role, "name": args.name}))
    elif args.append:
        out(token)
        err(f"added to {args.append}: {line}")
        err("the token is shown only this once: give it to its holder now")
    else:
        err("the token, shown only this once (give it to its holder now):")
        out(token)
        err("the line to add to the tokens file (MLGATE_AUTH_TOKENS_FILE):")
        out(line)
    return 0


def _append(path: Path, line: str) -> None:
    """Add ``line`` to the file, creating it readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as file:
        if path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            file.write("\n")
        file.write(line + "\n")
