"""What every structural check of a loaded model is built from: trusted sizes, typed reads, and
scikit-learn's own hyperparameter constraints.

A check derives a few sizes it can trust (the manifest's feature count, the number of classes)
and compares every array prediction reads against the shape those imply, instead of trusting
any size the artifact states about itself. Everything here refuses by raising ``InvalidModel``.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from sklearn.utils._param_validation import validate_parameter_constraints

__all__ = [
    "LARGEST",
    "InvalidModel",
    "attr",
    "bounded",
    "check_classes",
    "check_hyperparameters",
    "check_part",
    "check_same_hyperparameters",
    "exactly",
    "float_array",
    "holds_none",
    "may_hold",
    "n_features",
    "per_step",
    "require",
]

#: The largest magnitude a number prediction adds up may have. Far beyond any real model's leaf
#: values or coefficients, and small enough that no sum or product prediction makes of them
#: (millions of trees, float32 inputs times coefficients) overflows to infinity.
LARGEST = 1e100


class InvalidModel(ValueError):
    """The loaded object is not a model mlgate could have saved; the message says what is wrong."""


def require(condition: bool | np.bool_, reason: str) -> None:
    """Refuse the model with ``reason`` unless ``condition`` holds."""
    if not condition:
        raise InvalidModel(reason)


def attr(obj: Any, name: str) -> Any:
    """The attribute, or None: a crafted object may lack anything."""
    return getattr(obj, name, None)


def exactly(value: Any, expected: Any) -> bool:
    """Equal, and of the same kind: an integer where one is expected (1.0 == 1, but a count
    becomes a ``range`` bound or an index, where a float raises), lists and dicts throughout."""
    if isinstance(expected, (list, tuple)):
        return (
            type(value) is type(expected)
            and len(value) == len(expected)
            and all(exactly(v, e) for v, e in zip(value, expected, strict=True))
        )
    if isinstance(expected, dict):
        return (
            type(value) is dict
            and value.keys() == expected.keys()
            and all(exactly(value[k], e) for k, e in expected.items())
        )
    if type(expected) is int:
        return type(value) in (int, np.int64) and value == expected
    return type(value) is type(expected) and bool(value == expected)


def holds_none(obj: Any, name: str) -> bool:
    """Whether the attribute is there and None: prediction reads it without a default."""
    return name in vars(obj) and getattr(obj, name) is None


def bounded(values: np.ndarray) -> bool:
    """Whether every number is finite and at most ``LARGEST`` in magnitude."""
    with np.errstate(invalid="ignore"):
        return bool(np.all(np.abs(values) <= LARGEST))  # NaN compares False


def float_array(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``value`` as it must be: a float64 array of exactly ``shape``, of bounded finite numbers."""
    require(
        isinstance(value, np.ndarray) and value.dtype == np.float64 and value.shape == shape,
        f"{what} is not {shape[0] if len(shape) == 1 else shape} numbers",
    )
    require(bounded(value), f"{what} holds a number that is not finite or is too large")
    checked: np.ndarray = value
    return checked


def n_features(model: Any, expected: int | None = None) -> int:
    """The model's input width: a positive int, equal to ``expected`` when that is known."""
    n = attr(model, "n_features_in_")
    require(type(n) in (int, np.int64) and 1 <= n <= 10**7, "n_features_in_ is missing or invalid")
    require(expected is None or n == expected, "a part's feature count disagrees with the model's")
    names = attr(model, "feature_names_in_")
    if names is not None:
        # Compared with the request's column names on every prediction.
        require(
            isinstance(names, np.ndarray)
            and names.shape == (n,)
            and all(type(name) is str for name in names.tolist()),
            "feature_names_in_ disagrees with the feature count",
        )
    return int(n)


def check_classes(model: Any, *, counted: bool = True) -> np.ndarray:
    """A classifier's labels: at least two, distinct, of one plain kind; ``n_classes_`` (where the
    class keeps it) counts them."""
    classes = attr(model, "classes_")
    require(
        isinstance(classes, np.ndarray)
        and classes.ndim == 1
        and 2 <= len(classes) <= 10**6
        and classes.dtype.kind in "biufUO",
        "classes_ is missing or not a list of at least two labels",
    )
    if classes.dtype.kind == "O":
        # Labels of text or mixed columns; never anything a comparison would run code of.
        require(
            all(type(label) in (str, int, float, bool) for label in classes.tolist()),
            "classes_ holds something that is not a label",
        )
    try:
        distinct = len(np.unique(classes))
    except TypeError:  # labels of kinds that do not compare, which fitting never makes
        distinct = -1
    require(distinct == len(classes), "classes_ repeats a label or mixes kinds of labels")
    if classes.dtype.kind == "f":
        require(bool(np.all(np.isfinite(classes))), "classes_ holds a number that is not finite")
    if counted:
        count = attr(model, "n_classes_")
        require(
            type(count) in (int, np.int64) and count == len(classes),
            "n_classes_ disagrees with classes_",
        )
    labels: np.ndarray = classes
    return labels


def per_step(classes: int) -> int:
    """Trees per boosting step, or coefficient rows: one per class for a multiclass model, else one."""
    return 1 if classes <= 2 else classes


# scikit-learn reads these from the constructor's signature on every call: slow for 100 trees.
_PARAMETER_NAMES: dict[type, tuple[str, ...]] = {}


def _parameter_names(cls: Any) -> tuple[str, ...]:
    names = _PARAMETER_NAMES.get(cls)
    if names is None:
        names = _PARAMETER_NAMES[cls] = tuple(cls._get_param_names())
    return names


_CONSTRUCTED: dict[type, frozenset[str]] = {}


def may_hold(cls: type, name: str) -> bool:
    """Whether an object of ``cls`` may keep ``name`` as state: a hyperparameter, or fitted or
    private (ending or starting with an underscore, but not two: those name the protocols
    Python and scikit-learn look up, such as ``__sklearn_is_fitted__``). ``check_part`` refuses
    any other."""
    if name.startswith("__"):
        return False
    return name in _constructed_names(cls) or name.startswith("_") or name.endswith("_")


def _constructed_names(cls: type) -> frozenset[str]:
    """What the constructors of ``cls`` and its bases set: its hyperparameters, and those its
    bases keep for their members (a forest's ``estimator_params``, a tree's ``class_weight``)."""
    names = _CONSTRUCTED.get(cls)
    if names is None:
        found: set[str] = set()
        for base in cls.__mro__:
            init = base.__dict__.get("__init__")
            if init is not None and base is not object:
                found.update(inspect.signature(init).parameters)
        names = _CONSTRUCTED[cls] = frozenset(found - {"self"})
    return names


def _parameters(obj: Any) -> dict[str, Any]:
    state = vars(obj)
    names = _parameter_names(type(obj))
    missing = [name for name in names if name not in state]
    require(not missing, f"{type(obj).__name__} lacks its hyperparameter {missing[:1]}")
    return {name: getattr(obj, name) for name in names}


def check_hyperparameters(obj: Any) -> None:
    """Refuse hyperparameters scikit-learn itself would refuse: prediction reads some of them
    (thread counts, the loss, the solver) and trusts them to be what fitting accepted."""
    params = _parameters(obj)
    try:
        validate_parameter_constraints(
            type(obj)._parameter_constraints, params, caller_name=type(obj).__name__
        )
    except InvalidModel:
        raise
    except Exception as exc:  # InvalidParameterError, or a value too odd to even compare
        raise InvalidModel(f"a hyperparameter is invalid: {exc}") from None
    # get_params(deep=True), which the worker calls to cap thread counts, reads the
    # hyperparameters of every estimator a hyperparameter holds: a pipeline's steps, a column
    # transformer's transformers, a forest's template tree.
    for value in params.values():
        for part in _estimators_in(value, depth=3):
            check_part(part)


def _estimators_in(value: Any, depth: int) -> list[Any]:
    if hasattr(type(value), "get_params"):
        return [value]
    if depth and isinstance(value, (list, tuple)):
        return [part for item in value for part in _estimators_in(item, depth - 1)]
    return []


# The scalar types an encoder's ``dtype`` names: callable, as every class is, yet not code.
_SCALAR_TYPES = frozenset({np.float64, np.float32, np.int64, np.int32, np.uint8, np.bool_})


def _holds_no_code(obj: Any) -> None:
    """Every attribute is state, named as scikit-learn names state: a hyperparameter, or fitted
    or private (ending or starting with an underscore). So none can pose as a method a caller
    probes for, such as ``predict_proba`` on a regressor. And none is a function (a numpy
    ufunc, which skops trusts): the boosting loss is the one callable part, and it is rebuilt,
    never taken from the artifact."""
    for name, value in vars(obj).items():
        require(may_hold(type(obj), name), f"{type(obj).__name__}.{name} is not state")
        require(
            name == "_loss" or not callable(value) or any(value is t for t in _SCALAR_TYPES),
            f"{type(obj).__name__}.{name} holds code",
        )
    for name in _PROBED_METHODS:
        require(not hasattr(obj, name), f"{type(obj).__name__}.{name} poses as a method")


# Methods scikit-learn's prediction calls on any object that has one (metadata routing names a
# step by its ``_routing_repr()``), so that state of that name would be called. Found by tracing
# prediction (tests/unit/test_checks_cover_prediction.py), which fails on a new one.
_PROBED_METHODS = ("_routing_repr",)


def check_part(obj: Any) -> None:
    """One object of a model: hyperparameters scikit-learn accepts, and no code."""
    _holds_no_code(obj)
    check_hyperparameters(obj)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    return type(a) is type(b) and bool(a == b)


def check_same_hyperparameters(members: list[Any], *, besides: str = "random_state") -> None:
    """The members of an ensemble share their hyperparameters (all but ``besides``), so checking
    the first with scikit-learn's constraints checks them all, at a comparison's cost each."""
    first = _parameters(members[0])
    check_part(members[0])
    for member in members[1:]:
        _holds_no_code(member)
        params = _parameters(member)
        require(
            all(_same(value, first[name]) for name, value in params.items() if name != besides),
            "the members of the ensemble disagree on their hyperparameters",
        )
        seed = params.get(besides)
        require(
            seed is None or type(seed) is int or isinstance(seed, np.random.RandomState),
            f"a member's {besides} is invalid",
        )
