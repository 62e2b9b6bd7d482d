"""A search's candidates and halving schedule, as scikit-learn computes them (docs/search.md).

``check_search`` validates a ``SearchRequest`` at the gateway without scikit-learn, naming the
field; ``candidates`` lists the candidates in scikit-learn's order (``ParameterGrid``, or
``ParameterSampler`` over the space mapped to scipy distributions); ``Schedule`` is
``HalvingGridSearchCV``'s: the resources of each rung and how many candidates it keeps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import struct_pb2

from mlgate.errors import InvalidField
from mlgate.estimators import CLASSIFICATION, REGRESSION, hyperparameters
from mlgate.jobs import Plan, from_struct
from mlgate.jobs import plan as plan_train
from mlgate.quoting import quote
from mlgate.v1 import datasets_pb2, jobs_pb2
from mlgate_client.estimators import parameters

__all__ = [
    "DEFAULT_FOLDS",
    "SCORERS",
    "Schedule",
    "candidates",
    "check_search",
    "default_scoring",
    "resolve_halving",
    "resolve_search",
    "schedule",
    "to_struct",
    "train_rows",
]

DEFAULT_FOLDS = 5
DEFAULT_FACTOR = 3
# More candidates than this is a mistake more often than a plan (each is a job per rung).
MAX_CANDIDATES = 10_000

#: scikit-learn 1.9.1's ``get_scorer_names()``: kept here so the gateway checks a name without
#: importing scikit-learn; tests/unit/test_search_plan.py holds it equal to scikit-learn's.
SCORERS = frozenset(
    [
        "accuracy",
        "adjusted_mutual_info_score",
        "adjusted_rand_score",
        "average_precision",
        "balanced_accuracy",
        "completeness_score",
        "d2_absolute_error_score",
        "d2_brier_score",
        "d2_log_loss_score",
        "explained_variance",
        "f1",
        "f1_macro",
        "f1_micro",
        "f1_samples",
        "f1_weighted",
        "fowlkes_mallows_score",
        "homogeneity_score",
        "jaccard",
        "jaccard_macro",
        "jaccard_micro",
        "jaccard_samples",
        "jaccard_weighted",
        "matthews_corrcoef",
        "mutual_info_score",
        "neg_brier_score",
        "neg_log_loss",
        "neg_max_error",
        "neg_mean_absolute_error",
        "neg_mean_absolute_percentage_error",
        "neg_mean_gamma_deviance",
        "neg_mean_poisson_deviance",
        "neg_mean_squared_error",
        "neg_mean_squared_log_error",
        "neg_median_absolute_error",
        "neg_negative_likelihood_ratio",
        "neg_root_mean_squared_error",
        "neg_root_mean_squared_log_error",
        "normalized_mutual_info_score",
        "positive_likelihood_ratio",
        "precision",
        "precision_macro",
        "precision_micro",
        "precision_samples",
        "precision_weighted",
        "r2",
        "rand_score",
        "recall",
        "recall_macro",
        "recall_micro",
        "recall_samples",
        "recall_weighted",
        "roc_auc",
        "roc_auc_ovo",
        "roc_auc_ovo_weighted",
        "roc_auc_ovr",
        "roc_auc_ovr_weighted",
        "top_k_accuracy",
        "v_measure_score",
    ]
)

_DISTRIBUTION_KEYS = {"low", "high", "log", "int"}


def default_scoring(task: str) -> str:
    return "accuracy" if task == CLASSIFICATION else "r2"


def train_rows(rows: int, test_size: float) -> int:
    """The rows ``train_test_split`` leaves to train on: the test side is ceil(test_size * n)."""
    return rows - math.ceil(test_size * rows)


def folds(request: jobs_pb2.SearchRequest) -> int:
    return request.cv_folds or DEFAULT_FOLDS


def resolve_search(
    request: jobs_pb2.SearchRequest, schema: datasets_pb2.Dataset
) -> jobs_pb2.SearchRequest:
    """``request`` checked against its dataset's ``schema`` and with its defaults resolved (the
    seed, test size, folds and halving schedule), as the search is stored. Raises InvalidField
    naming the field (``train.target``, ``space.max_depth``, ...)."""
    try:
        checked = plan_train(request.train, schema)
    except InvalidField as exc:
        told = str(exc).removeprefix(f"{exc.field}: ")
        raise InvalidField(f"train.{exc.field}", told) from None
    check_search(request, checked, schema.rows)
    resolved = jobs_pb2.SearchRequest()
    resolved.CopyFrom(request)
    resolved.train.random_seed = checked.seed
    resolved.train.test_size = checked.test_size
    resolved.cv_folds = folds(request)
    if request.HasField("halving"):
        resolved.halving.CopyFrom(resolve_halving(request, checked, schema.rows))
    return resolved


def check_search(request: jobs_pb2.SearchRequest, plan: Plan, rows: int) -> list[dict[str, Any]]:
    """Validate ``request`` (its ``train`` planned already as ``plan``) against a dataset of
    ``rows`` rows; its candidates. Raises InvalidField naming the field."""
    space = from_struct(request.space)
    if not space:
        raise InvalidField("space", "is empty: map each hyperparameter to its values")
    if request.n_candidates < 0:
        raise InvalidField("n_candidates", "must not be negative (0 tries the whole grid)")
    for name, value in space.items():
        _check_dimension(name, value, random=request.n_candidates > 0)
        if name in plan.params:
            raise InvalidField(f"space.{name}", "is fixed in train.params as well; keep one")
    if request.cv_folds < 0 or request.cv_folds == 1:
        raise InvalidField("cv_folds", f"must be at least 2 (0 means {DEFAULT_FOLDS})")
    n_train = train_rows(rows, plan.test_size)
    if rows and folds(request) > n_train:
        raise InvalidField(
            "cv_folds", f"{folds(request)} folds need at least as many training rows ({n_train})"
        )
    if request.scoring and request.scoring not in SCORERS:
        raise InvalidField(
            "scoring",
            f"unknown scorer {quote(request.scoring)}; scikit-learn's names are "
            f"{', '.join(sorted(SCORERS))}",
        )
    if request.max_parallel < 0:
        raise InvalidField("max_parallel", "must not be negative (0: as many as workers take)")
    found = candidates(request, plan.seed)
    if len(found) > MAX_CANDIDATES:
        raise InvalidField(
            "space", f"makes {len(found):,} candidates; at most {MAX_CANDIDATES:,} are searched"
        )
    task = plan.task or CLASSIFICATION  # checked for a task the estimator has, as Train does
    for index, params in enumerate(found):
        try:
            hyperparameters(plan.estimator, task, {**plan.params, **params}, plan.seed)
        except InvalidField as exc:
            name = exc.field.removeprefix("params.")
            field = f"space.{name}" if name in params else exc.field
            told = str(exc).removeprefix(f"{exc.field}: ")
            raise InvalidField(field, f"candidate {index}: {told}") from None
    return found


def _check_dimension(name: str, value: Any, *, random: bool) -> None:
    field = f"space.{name}"
    if isinstance(value, list):
        if not value:
            raise InvalidField(field, "is an empty list: give at least one value")
        return
    if not isinstance(value, dict):
        raise InvalidField(
            field,
            "must be a list of values, or for a random search a distribution "
            '({"low": a, "high": b, "log": true|false, "int": true|false} or {"choice": [...]})',
        )
    if not random:
        raise InvalidField(field, "is a distribution: set n_candidates to draw from it")
    if "choice" in value:
        if set(value) != {"choice"} or not isinstance(value["choice"], list) or not value["choice"]:
            raise InvalidField(field, '{"choice": [...]} takes a non-empty list and nothing else')
        return
    unknown = set(value) - _DISTRIBUTION_KEYS
    if unknown:
        raise InvalidField(field, f"has unknown keys {sorted(unknown)}; use low, high, log, int")
    low, high = value.get("low"), value.get("high")
    if not all(isinstance(v, float) and math.isfinite(v) for v in (low, high)):
        raise InvalidField(field, "needs low and high, finite numbers")
    assert isinstance(low, float) and isinstance(high, float)
    for key in ("log", "int"):
        if not isinstance(value.get(key, False), bool):
            raise InvalidField(f"{field}.{key}", "must be true or false")
    if value.get("int") and not (low.is_integer() and high.is_integer()):
        raise InvalidField(field, "an int distribution needs whole low and high")
    if not low < high and not (value.get("int") and low == high):
        raise InvalidField(field, f"low ({low:g}) must be below high ({high:g})")
    if value.get("log") and low <= 0:
        raise InvalidField(field, f"a log distribution needs low above 0, not {low:g}")
    if value.get("log") and value.get("int"):
        raise InvalidField(field, "choose log or int, not both")


def _distribution(value: Any) -> Any:
    """A dimension as ``ParameterSampler`` takes it (docs/search.md lists the mapping)."""
    from scipy import stats  # lazy: see ``candidates``

    if isinstance(value, list):
        return value
    if "choice" in value:
        return value["choice"]
    low, high = value["low"], value["high"]
    if value.get("log"):
        return stats.loguniform(low, high)
    if value.get("int"):
        return stats.randint(int(low), int(high) + 1)
    return stats.uniform(low, high - low)


def candidates(request: jobs_pb2.SearchRequest, seed: int) -> list[dict[str, Any]]:
    """The candidates, in scikit-learn's order and, for a random search, its draws."""
    # Imported here, not at module level: only a search's planning needs scikit-learn and scipy,
    # and the gateway must start lean (tests/unit/test_lean_gateway.py).
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    space = from_struct(request.space)
    if request.n_candidates <= 0:
        return [dict(params) for params in ParameterGrid(space)]
    dists = {name: _distribution(value) for name, value in space.items()}
    sampler = ParameterSampler(dists, n_iter=request.n_candidates, random_state=seed)
    return [{k: _plain(v) for k, v in params.items()} for params in sampler]


def _plain(value: Any) -> Any:
    """A drawn value as JSON has it (numpy scalars to Python's)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


@dataclass(frozen=True)
class Schedule:
    """Successive halving's rungs: the resource each gives, and the candidates each scores."""

    resource: str
    resources: tuple[int, ...]
    counts: tuple[int, ...]
    factor: int

    @property
    def total(self) -> int:
        return sum(self.counts)


def resolve_halving(request: jobs_pb2.SearchRequest, plan: Plan, rows: int) -> jobs_pb2.Halving:
    """The request's halving with every default resolved as ``HalvingGridSearchCV`` would
    (``min_resources="smallest"``, ``max_resources`` the training rows for n_samples, factor 3):
    what the stored search holds, so its schedule needs nothing else."""
    halving = request.halving
    factor = halving.factor or DEFAULT_FACTOR
    if factor < 2:
        raise InvalidField("halving.factor", f"must be at least 2 (0 means {DEFAULT_FACTOR})")
    resource = halving.resource
    if not resource:
        raise InvalidField("halving.resource", "is required: n_samples or an integer parameter")
    if min(halving.min_resources, halving.max_resources) < 0:
        raise InvalidField("halving", "min_resources and max_resources must not be negative")
    if resource == "n_samples":
        max_resources = halving.max_resources or train_rows(rows, plan.test_size)
        min_resources = halving.min_resources
        if not min_resources:
            if plan.task != REGRESSION:
                # scikit-learn's "smallest" counts the classes, which only the data knows.
                raise InvalidField(
                    "halving.min_resources",
                    "is needed for a classification search on n_samples: scikit-learn's "
                    f'"smallest" is 2 x cv_folds x the number of classes (2 x {folds(request)}'
                    " x classes)",
                )
            min_resources = folds(request) * 2
    else:
        _check_resource(resource, plan, request)
        if not halving.max_resources:
            raise InvalidField(
                "halving.max_resources", f"is required for the resource {quote(resource)}"
            )
        max_resources, min_resources = halving.max_resources, halving.min_resources or 1
    if min_resources > max_resources:
        raise InvalidField(
            "halving.min_resources",
            f"({min_resources}) is above max_resources ({max_resources})",
        )
    return jobs_pb2.Halving(
        resource=resource,
        min_resources=min_resources,
        max_resources=max_resources,
        factor=factor,
    )


def schedule(halving: jobs_pb2.Halving, n_candidates: int) -> Schedule:
    """``HalvingGridSearchCV``'s schedule (``aggressive_elimination=False``) for a resolved
    ``halving`` (``resolve_halving``) and ``n_candidates`` candidates."""
    factor, low, high = halving.factor, halving.min_resources, halving.max_resources
    required = 1 + _floor_log(n_candidates, factor)
    possible = 1 + _floor_log(high // low, factor)
    resources, counts, left = [], [], n_candidates
    for rung in range(min(required, possible)):
        resources.append(min(int(factor**rung * low), high))
        counts.append(left)
        left = math.ceil(left / factor)
    return Schedule(halving.resource, tuple(resources), tuple(counts), factor)


def _floor_log(value: int, base: int) -> int:
    """floor(log(value, base)) as scikit-learn computes it (math.log, then floor)."""
    return math.floor(math.log(value, base))


def _check_resource(resource: str, plan: Plan, request: jobs_pb2.SearchRequest) -> None:
    field = "halving.resource"
    if resource in from_struct(request.space):
        raise InvalidField(field, f"{quote(resource)} is searched in space; it cannot be both")
    if resource in plan.params:
        raise InvalidField(field, f"{quote(resource)} is fixed in train.params; leave it out")
    task = plan.task or CLASSIFICATION
    path, _ = hyperparameters(plan.estimator, task, {}, plan.seed)
    known = parameters(path)
    spec = known.get(resource)
    if spec is None:
        raise InvalidField(
            field,
            f"{path.rsplit('.', 1)[-1]} has no parameter {quote(resource)}; use n_samples or an "
            "integer parameter such as n_estimators or max_iter",
        )
    allowed: Sequence[Mapping[str, Any]] = spec.get("allowed") or ()
    integer = isinstance(spec.get("default"), int) and not isinstance(spec.get("default"), bool)
    if not integer and not any(c.get("type") == "int" for c in allowed):
        raise InvalidField(field, f"{quote(resource)} is not an integer parameter")


def to_struct(params: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(dict(params))
    return struct
