"""Turning command-line text into request values: ``--param k=v``, feature lists and prediction rows."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

__all__ = [
    "UsageError",
    "as_columns",
    "parse_delimiter",
    "parse_features",
    "parse_param",
    "parse_params",
    "parse_rows",
]

# What a shell lets a person type for each delimiter the gateway reads.
_DELIMITERS = {",": ",", ";": ";", "|": "|", "tab": "\t", "\\t": "\t", "\t": "\t"}


class UsageError(Exception):
    """The command line is wrong; reported like argparse's own errors (exit status 2)."""


def parse_param(text: str) -> tuple[str, Any]:
    """``name=value`` with the value read as JSON (``5``, ``0.1``, ``null``, ``true``, ``"5"``),
    or as a plain string when it is not JSON (``criterion=gini``)."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise UsageError(f"--param {text!r} is not name=value")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name, value


def parse_params(texts: Iterable[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for text in texts:
        name, value = parse_param(text)
        if name in params:
            raise UsageError(f"--param {name} is given twice")
        params[name] = value
    return params


def parse_features(values: Iterable[str]) -> list[str]:
    """Column names from repeated ``-f`` flags and/or comma-separated ``--features`` lists."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def parse_rows(text: str, source: str) -> list[dict[str, Any]]:
    """Rows from a JSON list of objects, a single JSON object, or JSON Lines (one object a line)."""
    located: list[tuple[str, Any]]
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        located = [
            (f"{source} line {n}", _json_line(line, f"{source} line {n}")) for n, line in lines
        ]
    else:
        items = document if isinstance(document, list) else [document]
        located = [(f"{source} row {i}", row) for i, row in enumerate(items, 1)]
    if not located:
        raise UsageError(f"{source} has no rows")
    for where, row in located:
        if not isinstance(row, dict):
            raise UsageError(f"{where} is not a JSON object of feature values")
    return [row for _, row in located]


def _json_line(line: str, where: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where} is not JSON: {exc.msg}") from None


def parse_delimiter(text: str) -> str:
    """``--delimiter``: ``,`` ``;`` ``|`` or a tab (``tab``, ``\\t`` or a literal tab); empty
    leaves it to the gateway to detect."""
    if not text:
        return ""
    try:
        return _DELIMITERS[text.lower()]
    except KeyError:
        raise UsageError(f"--delimiter {text!r} is not one of ',', ';', '|' or 'tab'") from None


def as_columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The rows as one list of values per feature, for ``predict --columns``."""
    names = list(rows[0])
    for i, row in enumerate(rows, 1):
        if set(row) != set(names):
            raise UsageError(
                f"row {i} has other features than row 1: with --columns every row needs the same"
            )
    return {name: [row[name] for row in rows] for name in names}
