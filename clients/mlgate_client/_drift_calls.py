"""``MLGateClient.model_drift`` (GetModelDrift): how the inputs the answering gateway served a
model version lately compare with the model's training data. ``mlgate models drift`` prints it
(``_drift``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from mlgate.v1 import models_pb2

if TYPE_CHECKING:
    from mlgate.v1 import models_pb2_grpc

__all__ = ["DriftCalls", "FeatureDrift", "ModelDrift"]

Resp = TypeVar("Resp")


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's population stability index against the training part."""

    feature: str
    #: None where there is no number: "no reference" or "no data".
    psi: float | None
    #: "ok" below 0.1, "moderate" from 0.1, "major" from 0.25; "no reference" for a model
    #: trained before references were recorded; "no data" before the feature was served.
    level: str


@dataclass(frozen=True)
class ModelDrift:
    """A model version's input drift as one gateway sees it."""

    model_id: str
    name: str
    version: int
    #: Rows in the window the index is computed over, and rows served since the gateway started.
    window_rows: int
    rows_seen: int
    has_reference: bool
    features: tuple[FeatureDrift, ...]

    @classmethod
    def from_proto(cls, found: models_pb2.GetModelDriftResponse) -> ModelDrift:
        numbered = ("ok", "moderate", "major")
        return cls(
            found.model_id,
            found.name,
            found.version,
            found.window_rows,
            found.rows_seen,
            found.has_reference,
            tuple(
                FeatureDrift(f.feature, f.psi if f.level in numbered else None, f.level)
                for f in found.features
            ),
        )


class DriftCalls:
    """Mixed into MLGateClient, which provides the stub and ``_unary``."""

    if TYPE_CHECKING:
        _models: models_pb2_grpc.ModelServiceStub

        def _unary(self, method: Callable[..., Resp], request: Any) -> Resp: ...

    def model_drift(self, model: str) -> ModelDrift:
        """Input drift of ``model`` (NAME, NAME/VERSION, an id, or NAME@ALIAS: a weighted
        alias's heaviest route) on the gateway that answers."""
        request = models_pb2.GetModelDriftRequest(model_id=model)
        return ModelDrift.from_proto(self._unary(self._models.GetModelDrift, request))
