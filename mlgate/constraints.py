"""scikit-learn's hyperparameter constraints, checked without importing scikit-learn.

``sklearn_constraints.json`` is generated from each allowlisted class's ``_parameter_constraints``
and defaults by ``make tables`` (``python -m workers.tables``), and a test regenerates it and holds
it equal, so a scikit-learn upgrade that changes a constraint fails until the table is renewed.
A request's values are JSON (from a protobuf Struct): constraints only Python objects can meet
(callables, estimators, sparse matrices) are never met by them and are left out of messages.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from importlib import resources
from typing import Any, TypeGuard

from mlgate.errors import InvalidArgument
from mlgate.quoting import quote, quote_value, shorten

__all__ = ["TABLE_FILE", "check", "describe", "has_parameter", "satisfies", "table", "typed"]

TABLE_FILE = "sklearn_constraints.json"

Constraint = Mapping[str, Any]

# The JSON values that are instances of a type scikit-learn names (bool is an int, as in Python),
# and what to call them in a message.
_INSTANCES: dict[str, tuple[tuple[type, ...], str]] = {
    "numbers.Integral": ((int,), "an int"),
    "numbers.Real": ((int, float), "a float"),
    "builtins.int": ((int,), "an int"),
    "builtins.float": ((float,), "a float"),
    "builtins.bool": ((bool,), "a bool"),
    "builtins.str": ((str,), "a str"),
    "builtins.dict": ((dict,), "a dict"),
    "builtins.list": ((list,), "a list"),
}
_NO_INSTANCES: tuple[tuple[type, ...], str] = ((), "")
_INTERVAL_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "real": (int, float),
    "real_not_int": (float,),
}
_RANDOM_STATE = {"kind": "interval", "type": "int", "left": 0, "right": 2**32 - 1, "closed": "both"}


@functools.cache
def table() -> dict[str, Any]:
    """The generated table: ``{"scikit-learn": version, "classes": {path: {param: spec}}}``."""
    loaded: dict[str, Any] = json.loads(
        resources.files("mlgate").joinpath(TABLE_FILE).read_text(encoding="utf-8")
    )
    return loaded


def _parameters(path: str) -> Mapping[str, Any]:
    found: Mapping[str, Any] | None = table()["classes"].get(path)
    if found is None:
        raise LookupError(f"{path} is not in {TABLE_FILE}; run `make tables`")
    return found


def has_parameter(path: str, name: str) -> bool:
    return name in _parameters(path)


def check(path: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The request's hyperparameters for class ``path``, integer-valued numbers made ints where
    the parameter's default is an int; raises InvalidArgument naming ``params.<name>``."""
    known = _parameters(path)
    short = path.rsplit(".", 1)[-1]
    checked: dict[str, Any] = {}
    for name in sorted(params):
        field = f"params.{shorten(name)}"
        if name not in known:
            raise InvalidArgument(
                field,
                f"{short} has no hyperparameter {quote(name)}; it has {', '.join(sorted(known))}",
            )
        value = params[name]
        if not _finite(value):
            # JSON, in which hyperparameters are recorded and shown, has no NaN or infinity.
            what = "be a finite number" if isinstance(value, float) else "hold finite numbers only"
            raise InvalidArgument(field, f"must {what}, not {quote_value(value)}")
        value = _coerce(value, known[name]["default"])
        allowed = known[name]["allowed"]
        if allowed is not None and not any(satisfies(c, value) for c in allowed):
            raise InvalidArgument(
                field, f"{short} needs {describe(allowed)}; got {quote_value(value)} instead"
            )
        checked[name] = value
    return checked


def typed(path: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Recorded hyperparameters of class ``path`` with the integer ones ints again, by the rule
    ``check`` applies (a Struct, in which they are recorded, keeps every number a double)."""
    try:
        known = _parameters(path)
    except LookupError:
        return dict(params)
    return {
        name: _coerce(value, known[name]["default"]) if name in known else value
        for name, value in params.items()
    }


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


def _coerce(value: Any, default: Any) -> Any:
    # Struct carries every number as a double; give integer-valued ones back their int type
    # where the estimator's default says the parameter is an integer (or unset).
    if (
        isinstance(value, float)
        and value.is_integer()
        and (default is None or (isinstance(default, int) and not isinstance(default, bool)))
    ):
        return int(value)
    return value


def satisfies(constraint: Constraint, value: Any) -> bool:
    """Whether a JSON value meets one constraint, as scikit-learn's own check would decide."""
    kind = constraint["kind"]
    if kind == "interval":
        return _in_interval(constraint, value)
    if kind == "options":
        types = _INSTANCES.get(constraint["type"], _NO_INSTANCES)[0]
        return isinstance(value, types) and value in constraint["options"]
    if kind == "instance":
        return isinstance(value, _INSTANCES.get(constraint["type"], _NO_INSTANCES)[0])
    if kind == "none":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "random_state":
        return value is None or _in_interval(_RANDOM_STATE, value)
    if kind == "verbose":
        return isinstance(value, int) and value >= 0
    if kind == "array-like":
        return isinstance(value, (list, dict))
    # callable, methods, sparse matrix: only Python objects meet them, never a JSON value.
    return False


def _number_of(kind: str, value: Any) -> TypeGuard[float]:
    return isinstance(value, _INTERVAL_TYPES[kind])


def _in_interval(interval: Constraint, value: Any) -> bool:
    if not _number_of(interval["type"], value) or math.isnan(value):
        return False
    left = -math.inf if interval["left"] is None else interval["left"]
    right = math.inf if interval["right"] is None else interval["right"]
    closed = interval["closed"]
    above = value >= left if closed in ("left", "both") else value > left
    below = value <= right if closed in ("right", "both") else value < right
    return bool(above and below)


def describe(allowed: list[Constraint]) -> str:
    """What a request may send, in scikit-learn's words but JSON's values: "an int in the range
    [1, inf) or null"."""
    parts = [_describe(c) for c in allowed if not c.get("hidden")]
    shown = [part for part in parts if part]
    if not shown:
        return "a value a request cannot express"
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def _describe(constraint: Constraint) -> str:
    kind = constraint["kind"]
    if kind == "interval":
        real = constraint["type"] != "int"
        left = _bound(constraint["left"], real, "-inf")
        right = _bound(constraint["right"], real, "inf")
        opening = "[" if constraint["closed"] in ("left", "both") else "("
        closing = "]" if constraint["closed"] in ("right", "both") else ")"
        noun = "a float" if real else "an int"
        return f"{noun} in the range {opening}{left}, {right}{closing}"
    if kind == "options":
        return f"one of {{{', '.join(repr(o) for o in constraint['options'])}}}"
    if kind == "instance":
        return _INSTANCES.get(constraint["type"], _NO_INSTANCES)[1]
    simple = {
        "none": "null",
        "boolean": "a bool",
        "random_state": "an int in the range [0, 4294967295] or null",
        "verbose": "an int in the range [0, inf) or a bool",
        "array-like": "a list",
    }
    return simple.get(kind, "")


def _bound(value: float | None, real: bool, unbounded: str) -> str:
    if value is None:
        return unbounded
    return str(float(value)) if real else str(value)
