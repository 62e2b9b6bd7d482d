"""``MLGateClient.shadow_comparison`` (GetShadowComparison): an alias's shadow as the answering
gateway has seen it since it started. ``mlgate models compare`` prints it (``_shadow``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from mlgate.v1 import models_pb2

if TYPE_CHECKING:
    from mlgate.v1 import models_pb2_grpc

__all__ = ["Quantiles", "ShadowCalls", "ShadowComparison"]

Resp = TypeVar("Resp")


@dataclass(frozen=True)
class Quantiles:
    """A distribution's p50, p90 and p99 (seconds for latencies)."""

    p50: float
    p90: float
    p99: float

    @classmethod
    def from_proto(cls, summary: models_pb2.LatencySummary) -> Quantiles:
        return cls(summary.p50, summary.p90, summary.p99)


@dataclass(frozen=True)
class ShadowComparison:
    """How an alias's shadow version compares with the versions that answered, as one gateway
    has seen it since it started."""

    name: str
    alias: str
    shadow_version: int
    #: "regression" or "classification"; "" before any request was compared.
    task: str
    mirrored: int
    dropped: int
    shadow_errors: int
    rows: int
    #: Classification: the share of rows where both gave the same class.
    agreement: float
    #: Regression: the absolute differences' mean and quantiles.
    mean_abs_diff: float
    abs_diff: Quantiles
    primary_latency: Quantiles
    shadow_latency: Quantiles

    @classmethod
    def from_proto(cls, found: models_pb2.GetShadowComparisonResponse) -> ShadowComparison:
        return cls(
            found.name,
            found.alias,
            found.shadow_version,
            found.task,
            found.mirrored,
            found.dropped,
            found.shadow_errors,
            found.rows,
            found.agreement,
            found.mean_abs_diff,
            Quantiles.from_proto(found.abs_diff),
            Quantiles.from_proto(found.primary_latency),
            Quantiles.from_proto(found.shadow_latency),
        )


class ShadowCalls:
    """Mixed into MLGateClient, which provides the stub and ``_unary``."""

    if TYPE_CHECKING:
        _models: models_pb2_grpc.ModelServiceStub

        def _unary(self, method: Callable[..., Resp], request: Any) -> Resp: ...

    def shadow_comparison(self, name: str, alias: str) -> ShadowComparison:
        """The figures of ``name@alias``'s shadow on the gateway that answers."""
        request = models_pb2.GetShadowComparisonRequest(name=name, alias=alias)
        return ShadowComparison.from_proto(self._unary(self._models.GetShadowComparison, request))
