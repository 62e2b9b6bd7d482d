"""The tables the gateway reads instead of importing scikit-learn, generated from it here.

``python -m workers.tables`` (``make tables``) writes them; ``--check`` only compares. A unit test
regenerates both and holds the committed files equal, so a scikit-learn upgrade that changes what
they say fails until they are renewed:

- ``clients/mlgate_client/sklearn_constraints.json``: every allowlisted class's hyperparameters, their defaults
  and scikit-learn's ``_parameter_constraints`` for them;
- ``storage/builtin_datasets.json``: the schemas of the datasets scikit-learn ships.
"""

from __future__ import annotations

import inspect
import json
import sys
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import sklearn
from sklearn.utils import _param_validation as pv

from mlgate.ids import BUILTIN_DATASETS
from mlgate_client.estimators import ESTIMATORS, TABLE_FILE
from storage.datasets import BUILTIN_TABLE, builtin_frame, dtype_name
from workers.estimators import sklearn_class

__all__ = ["TABLES", "builtin_datasets", "main", "render", "sklearn_constraints"]

_ROOT = Path(__file__).resolve().parent.parent
_INTERVAL_TYPES = {Integral: "int", Real: "real", pv.RealNotInt: "real_not_int"}
_NAMED = ("boolean", "random_state", "verbose", "array-like", "sparse matrix")


def _type_name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _bound(value: Any, integral: bool) -> int | float | None:
    if value is None:
        return None
    return int(value) if integral else float(value)


def _constraint(constraint: Any) -> dict[str, Any]:
    if isinstance(constraint, pv.Hidden):
        return {**_constraint(constraint.constraint), "hidden": True}
    if isinstance(constraint, pv.Interval):
        integral = constraint.type is Integral
        return {
            "kind": "interval",
            "type": _INTERVAL_TYPES[constraint.type],
            "left": _bound(constraint.left, integral),
            "right": _bound(constraint.right, integral),
            "closed": constraint.closed,
        }
    if isinstance(constraint, pv.Options):
        described = {
            "kind": "options",
            "type": _type_name(constraint.type),
            "options": sorted(constraint.options, key=repr),
        }
        if constraint.deprecated:
            described["deprecated"] = sorted(constraint.deprecated, key=repr)
        return described
    if constraint is None:
        return {"kind": "none"}
    if isinstance(constraint, str) and constraint in _NAMED:
        return {"kind": constraint}
    if constraint is callable:
        return {"kind": "callable"}
    if isinstance(constraint, pv.HasMethods):
        return {"kind": "methods", "methods": list(constraint.methods)}
    if inspect.isclass(constraint):
        return {"kind": "instance", "type": _type_name(constraint)}
    # A new kind of constraint: mlgate.constraints must learn to check it before the table can hold it.
    raise ValueError(f"unknown scikit-learn constraint {constraint!r}")


def _default(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"default {value!r} is not a JSON value; mlgate.constraints cannot hold it")


def sklearn_constraints() -> dict[str, Any]:
    """Each allowlisted class's hyperparameters: default and allowed values (None: unchecked)."""
    classes: dict[str, Any] = {}
    for spec in ESTIMATORS.values():
        for path in spec.classes.values():
            cls = sklearn_class(path)
            declared = getattr(cls, "_parameter_constraints", {})
            params: dict[str, Any] = {}
            for name, default in cls().get_params(deep=False).items():
                allowed = declared.get(name, "no_validation")
                params[name] = {
                    "default": _default(default),
                    "allowed": None
                    if allowed == "no_validation"
                    else [_constraint(c) for c in allowed],
                }
            classes[path] = params
    return {"scikit-learn": sklearn.__version__, "classes": dict(sorted(classes.items()))}


def builtin_datasets() -> dict[str, Any]:
    """The schemas of the built-in datasets, as ``storage.datasets`` serves them."""
    described: dict[str, Any] = {}
    for dataset_id in BUILTIN_DATASETS:
        frame, digest = builtin_frame(dataset_id)
        described[dataset_id] = {
            "rows": len(frame),
            "sha256": digest,
            "columns": [[str(name), dtype_name(dtype)] for name, dtype in frame.dtypes.items()],
        }
    return {"scikit-learn": sklearn.__version__, "datasets": described}


TABLES = {
    _ROOT / "clients" / "mlgate_client" / TABLE_FILE: sklearn_constraints,
    _ROOT / "storage" / BUILTIN_TABLE: builtin_datasets,
}


def render(table: dict[str, Any]) -> str:
    """JSON with one line per leaf entry (a hyperparameter, a dataset), so that a scikit-learn
    upgrade's diff reads as a list of what changed."""
    return _render(table, "") + "\n"


def _render(value: Any, indent: str) -> str:
    if not isinstance(value, dict) or not any(isinstance(v, dict) for v in value.values()):
        return json.dumps(value)
    inner = indent + " "
    items = [f"{inner}{json.dumps(k)}: {_render(v, inner)}" for k, v in value.items()]
    return "{\n" + ",\n".join(items) + f"\n{indent}}}"


def main(argv: list[str]) -> int:
    """Write every table, or with ``--check`` report the stale ones (exit 1)."""
    stale = []
    for path, generate in TABLES.items():
        text = render(generate())
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        if "--check" in argv:
            stale.append(path)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(_ROOT)}")
    for path in stale:
        print(f"{path.relative_to(_ROOT)} is stale: run `make tables`", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
