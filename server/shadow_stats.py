"""What a gateway has seen of an alias's shadow: counts, the comparison of its answers with the
primary's, and each side's latency. Kept in memory per (name, alias) since the gateway started,
in bounded windows (the last ``WINDOW`` rows and requests for quantiles; counts and the mean over
everything), and exported as Prometheus metrics by the shadow's name and version.

Outputs are read from the serialized ``ModelInferResponse`` without numpy: typed contents, or raw
contents unpacked with ``array`` (little-endian, as the protocol sends them).
"""

from __future__ import annotations

import array
import contextlib
import math
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram

from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.tensors import DATATYPES, PREDICT
from mlgate.v1 import models_pb2

__all__ = [
    "METRIC_NAMES",
    "ROWS_COMPARED",
    "WINDOW",
    "Comparison",
    "Comparisons",
    "predictions_of",
    "quantiles",
]

#: Rows (absolute differences) and requests (latencies) kept for the quantiles.
WINDOW = 10_000
#: Rows of one request compared: the comparison runs on the gateway's event loop, and a request
#: of 100,000 rows must not hold it for a tenth of a second.
ROWS_COMPARED = 1_000

_LABELS = ["name", "version"]
SHADOW_REQUESTS = Counter(
    "mlgate_shadow_requests", "Requests mirrored to an alias's shadow version.", _LABELS
)
SHADOW_DROPPED = Counter(
    "mlgate_shadow_dropped",
    "Requests not mirrored to an alias's shadow version: its bounded queue was full.",
    _LABELS,
)
SHADOW_ERRORS = Counter(
    "mlgate_shadow_errors", "Mirrored requests the shadow version answered with an error.", _LABELS
)
SHADOW_AGREE = Counter(
    "mlgate_shadow_agree_rows",
    "Rows where a classifier's shadow gave the primary's class.",
    _LABELS,
)
SHADOW_DISAGREE = Counter(
    "mlgate_shadow_disagree_rows",
    "Rows where a classifier's shadow gave another class than the primary.",
    _LABELS,
)
SHADOW_ABS_DIFF = Histogram(
    "mlgate_shadow_abs_diff",
    "A regressor's shadow's absolute difference from the primary's prediction, per row.",
    _LABELS,
    buckets=(0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000),
)
SHADOW_LATENCY = Histogram(
    "mlgate_shadow_latency_seconds",
    "Latency of mirrored requests, each side (primary or shadow) as the gateway measured it.",
    [*_LABELS, "side"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
_ALL = (SHADOW_REQUESTS, SHADOW_DROPPED, SHADOW_ERRORS, SHADOW_AGREE, SHADOW_DISAGREE)

METRIC_NAMES = frozenset(
    {
        "mlgate_shadow_requests_total",
        "mlgate_shadow_dropped_total",
        "mlgate_shadow_errors_total",
        "mlgate_shadow_agree_rows_total",
        "mlgate_shadow_disagree_rows_total",
        "mlgate_shadow_abs_diff",
        "mlgate_shadow_latency_seconds",
    }
)

Value = float | int | str | bool
_ARRAY_CODES = {"FP64": "d", "FP32": "f", "INT64": "q", "INT32": "i", "BOOL": "B"}


def quantiles(values: Sequence[float], wanted: Sequence[float] = (0.5, 0.9, 0.99)) -> list[float]:
    """The nearest-rank quantiles of ``values`` (0.0 each when there are none)."""
    if not values:
        return [0.0 for _ in wanted]
    ordered = sorted(values)
    top = len(ordered) - 1
    return [ordered[min(top, max(0, math.ceil(q * len(ordered)) - 1))] for q in wanted]


def _raw(data: bytes, datatype: str) -> list[Value]:
    if datatype == "BYTES":
        found: list[Value] = []
        at = 0
        while at + 4 <= len(data):
            size = int.from_bytes(data[at : at + 4], "little")
            found.append(data[at + 4 : at + 4 + size].decode(errors="replace"))
            at += 4 + size
        return found
    values = array.array(_ARRAY_CODES[datatype])
    values.frombytes(data)
    if sys.byteorder != "little":
        values.byteswap()
    if datatype == "BOOL":
        return [bool(v) for v in values]
    return list(values)


def predictions_of(data: bytes) -> list[Value] | None:
    """The ``predict`` output of a serialized ModelInferResponse; None when it has none."""
    response = pb.ModelInferResponse.FromString(data)
    for i, output in enumerate(response.outputs):
        if output.name != PREDICT or output.datatype not in DATATYPES:
            continue
        if response.raw_output_contents:
            return _raw(response.raw_output_contents[i], output.datatype)
        values: list[Value] = list(getattr(output.contents, DATATYPES[output.datatype].field))
        if output.datatype == "BYTES":
            values = [bytes(v).decode(errors="replace") for v in values]  # type: ignore[arg-type]
        return values
    return None


def _same(a: Value, b: Value) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


@dataclass
class Comparison:
    """One alias's shadow as this gateway has seen it since it started (or since the alias was
    given another shadow version)."""

    name: str
    alias: str
    shadow_version: int
    task: str = ""
    mirrored: int = 0
    dropped: int = 0
    shadow_errors: int = 0
    rows: int = 0
    agreed: int = 0
    abs_diff_sum: float = 0.0
    abs_diffs: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    primary_latency: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    shadow_latency: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    @property
    def _labels(self) -> tuple[str, str]:
        return self.name, str(self.shadow_version)

    def drop(self) -> None:
        self.dropped += 1
        SHADOW_DROPPED.labels(*self._labels).inc()

    def mirror(self) -> None:
        self.mirrored += 1
        SHADOW_REQUESTS.labels(*self._labels).inc()

    def failed(self) -> None:
        self.shadow_errors += 1
        SHADOW_ERRORS.labels(*self._labels).inc()

    def compare(
        self,
        primary: Sequence[Value],
        shadow: Sequence[Value],
        primary_seconds: float,
        shadow_seconds: float,
    ) -> None:
        """Count one mirrored request both sides answered (rows paired in order)."""
        labels = self._labels
        self.primary_latency.append(primary_seconds)
        self.shadow_latency.append(shadow_seconds)
        SHADOW_LATENCY.labels(*labels, "primary").observe(primary_seconds)
        SHADOW_LATENCY.labels(*labels, "shadow").observe(shadow_seconds)
        pairs = list(zip(primary[:ROWS_COMPARED], shadow[:ROWS_COMPARED], strict=False))
        self.rows += len(pairs)
        if self.task == "classification":
            agreed = sum(1 for a, b in pairs if _same(a, b))
            self.agreed += agreed
            SHADOW_AGREE.labels(*labels).inc(agreed)
            SHADOW_DISAGREE.labels(*labels).inc(len(pairs) - agreed)
            return
        histogram = SHADOW_ABS_DIFF.labels(*labels)
        for a, b in pairs:
            diff = abs(float(a) - float(b))
            self.abs_diff_sum += diff
            self.abs_diffs.append(diff)
            histogram.observe(diff)

    def summary(self) -> models_pb2.GetShadowComparisonResponse:
        """The figures GetShadowComparison answers with."""
        classification = self.task == "classification"
        regression = self.task == "regression"
        return models_pb2.GetShadowComparisonResponse(
            name=self.name,
            alias=self.alias,
            shadow_version=self.shadow_version,
            mirrored=self.mirrored,
            dropped=self.dropped,
            shadow_errors=self.shadow_errors,
            rows=self.rows,
            agreement=self.agreed / self.rows if classification and self.rows else 0.0,
            mean_abs_diff=self.abs_diff_sum / self.rows if regression and self.rows else 0.0,
            abs_diff=_summary(self.abs_diffs),
            primary_latency=_summary(self.primary_latency),
            shadow_latency=_summary(self.shadow_latency),
            task=self.task,
        )


def _summary(values: Sequence[float]) -> models_pb2.LatencySummary:
    p50, p90, p99 = quantiles(values)
    return models_pb2.LatencySummary(p50=p50, p90=p90, p99=p99)


class Comparisons:
    """Every alias's shadow figures on this gateway."""

    def __init__(self) -> None:
        self._by_alias: dict[tuple[str, str], Comparison] = {}

    def of(self, name: str, alias: str, shadow_version: int, task: str) -> Comparison:
        """The figures of ``name@alias`` with ``shadow_version``: begun anew when the alias's
        shadow (or the task of its primary) changed."""
        found = self._by_alias.get((name, alias))
        if found is None or found.shadow_version != shadow_version or found.task != task:
            found = self._by_alias[(name, alias)] = Comparison(name, alias, shadow_version, task)
        return found

    def get(self, name: str, alias: str) -> Comparison | None:
        return self._by_alias.get((name, alias))

    def forget_alias(self, name: str, alias: str) -> None:
        self._by_alias.pop((name, alias), None)

    def forget_version(self, name: str, version: int) -> None:
        """A deleted version's shadow series go; figures of the aliases it shadowed with them."""
        for key, comparison in list(self._by_alias.items()):
            if key[0] == name and comparison.shadow_version == version:
                del self._by_alias[key]
        forget_series(name, version)


def forget_series(name: str, version: int) -> None:
    """Remove the shadow series of ``name``'s ``version``."""
    labels = (name, str(version))
    for metric in (*_ALL, SHADOW_ABS_DIFF):
        with contextlib.suppress(KeyError):
            metric.remove(*labels)
    for side in ("primary", "shadow"):
        with contextlib.suppress(KeyError):
            SHADOW_LATENCY.remove(*labels, side)
