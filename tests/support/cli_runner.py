"""The CLI run in the test process, as the client tests drive it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["Run", "cli_json"]

#: Runs one ``mlgate`` command; returns (exit status, stdout, stderr).
Run = Callable[..., tuple[int, str, str]]


def cli_json(run: Run, *argv: str) -> Any:
    """The JSON a command prints with --json; it must succeed."""
    status, out, err = run("--json", *argv)
    assert status == 0, err
    return json.loads(out)
