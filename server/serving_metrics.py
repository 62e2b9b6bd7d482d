"""Per-version serving metrics: requests, errors and latency by model name, version, alias and path.

``infer`` is ModelInfer, over gRPC or REST (from the resolved model to the worker's answer, as the
gateway measures it); ``predict`` is the job-style Predict (from the request's arrival at the
gateway to the SUCCEEDED or FAILED event that its stream delivers, so queueing and the worker's
time included). Only requests whose model resolved are counted here: a reference to no model (a
misspelled name) would otherwise make a series per typo, and is counted by code in
``mlgate_inference_requests_total`` as before.

Label sets stay bounded:

- a named model's series carry its name and version, and the alias the request came through (""
  for none); aliases are bounded per name by the registry;
- every model without a name shares one set of series, ``name=""`` and ``version=""``: model ids
  are unbounded, so they are never labels;
- ``forget_version`` (DeleteModel) removes every series of the version deleted, and
  ``forget_alias`` (DeleteModelAlias) every series of the alias, on the gateway that answered
  the call (another gateway's series of that version stop growing and go with its restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from prometheus_client import Counter, Histogram

from mlgate.errors import MLGateError

__all__ = [
    "INFER",
    "METRIC_NAMES",
    "MODEL_ERRORS",
    "MODEL_LATENCY",
    "MODEL_REQUESTS",
    "PREDICT",
    "Timer",
    "forget_alias",
    "forget_version",
    "observe",
    "served",
    "version_label",
]

INFER = "infer"
PREDICT = "predict"

_LABELS = ["name", "version", "alias", "path"]
# ModelInfer answers in milliseconds; a Predict job waits its turn in a queue as well.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

MODEL_REQUESTS = Counter(
    "mlgate_model_requests",
    "Prediction requests for a model version, answered or not, by path (infer or predict).",
    _LABELS,
)
MODEL_ERRORS = Counter(
    "mlgate_model_errors",
    "Prediction requests for a model version that ended in an error, by gRPC status code.",
    [*_LABELS, "code"],
)
MODEL_LATENCY = Histogram(
    "mlgate_model_request_seconds",
    "Latency of a model version's prediction requests, answered or not.",
    _LABELS,
    buckets=_BUCKETS,
)

#: As Prometheus exposes them (counters gain ``_total``).
METRIC_NAMES = frozenset(
    {"mlgate_model_requests_total", "mlgate_model_errors_total", "mlgate_model_request_seconds"}
)

# The label values each (name, version) has been given, so its series can be removed.
_Labels = tuple[str, str, str, str]
_series: dict[tuple[str, str], set[_Labels]] = {}
_error_series: dict[tuple[str, str], set[tuple[str, str, str, str, str]]] = {}


def version_label(name: str, version: int) -> tuple[str, str]:
    """The (name, version) labels of a model: ("", "") for every model without a name."""
    if not name:
        return "", ""
    return name, str(version)


def observe(
    name: str, version: int, alias: str, path: str, seconds: float, code: str = "OK"
) -> None:
    """Count one request of ``path`` for the model (``code`` its gRPC status name)."""
    name_label, version_text = version_label(name, version)
    labels = (name_label, version_text, alias if name_label else "", path)
    _series.setdefault(labels[:2], set()).add(labels)
    MODEL_REQUESTS.labels(*labels).inc()
    MODEL_LATENCY.labels(*labels).observe(seconds)
    if code != "OK":
        with_code = (*labels, code)
        _error_series.setdefault(labels[:2], set()).add(with_code)
        MODEL_ERRORS.labels(*with_code).inc()


class Timer:
    """How long a request took, once it has ended."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds = 0.0


@contextlib.contextmanager
def served(name: str, version: int, alias: str, path: str) -> Iterator[Timer]:
    """Count the request the block answers: its latency, and its error's code if it raises."""
    timer = Timer()
    code = "OK"
    try:
        yield timer
    except asyncio.CancelledError:
        code = "CANCELLED"
        raise
    except MLGateError as exc:
        code = exc.code
        raise
    except Exception:
        code = "INTERNAL"
        raise
    finally:
        timer.seconds = time.perf_counter() - timer.started
        observe(name, version, alias, path, timer.seconds, code)


def _remove(labels: tuple[str, ...], *metrics: Counter | Histogram) -> None:
    for metric in metrics:
        with contextlib.suppress(KeyError):  # never created on this metric
            metric.remove(*labels)


def forget_version(name: str, version: int) -> None:
    """Remove every series of ``name``'s ``version`` (it was deleted)."""
    if not name:
        return  # unnamed models share their series: deleting one leaves the others'
    key = version_label(name, version)
    for labels in _series.pop(key, set()):
        _remove(labels, MODEL_REQUESTS, MODEL_LATENCY)
    for with_code in _error_series.pop(key, set()):
        _remove(with_code, MODEL_ERRORS)


def forget_alias(name: str, alias: str) -> None:
    """Remove the series of requests that came through ``name@alias`` (it was deleted)."""
    for key, labels_set in list(_series.items()):
        if key[0] != name:
            continue
        gone = {labels for labels in labels_set if labels[2] == alias}
        for labels in gone:
            _remove(labels, MODEL_REQUESTS, MODEL_LATENCY)
        labels_set -= gone
    for key, codes in list(_error_series.items()):
        if key[0] != name:
            continue
        gone_codes = {labels for labels in codes if labels[2] == alias}
        for with_code in gone_codes:
            _remove(with_code, MODEL_ERRORS)
        codes -= gone_codes
