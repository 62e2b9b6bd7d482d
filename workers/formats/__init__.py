"""Model formats: a fitted estimator as an artifact's bytes and back, as data, never as code.

Two formats, named by each model's manifest (``storage.models``, which stores the bytes and never
reads them):

* ``arrays`` (``ARRAYS``), mlgate's own: every allowlisted estimator, saved as JSON and arrays;
* ``skops_format`` (``SKOPS``), for what that does not describe and for models saved by earlier
  versions, from trusted types only.

Whatever the format, loading allocates at most ``MLGATE_MAX_MODEL_BYTES`` (``ResourceExhausted``
past it), and ``fitted.check_fitted`` checks a loaded model's structure before anything runs on
it, so a crafted or damaged artifact is refused (``IntegrityError``, DATA_LOSS) with its reason.
Only workers import this package: it imports scikit-learn, which the gateway never loads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from mlgate.errors import FailedPrecondition, MLGateError, ResourceExhausted
from mlgate.v1 import models_pb2
from storage.errors import IntegrityError
from storage.models import ARRAYS, SKOPS, Encoded, ModelRepository, sklearn_version
from workers.formats import arrays
from workers.formats.fitted import InvalidModel, check_fitted
from workers.values import plain, values

__all__ = ["decode", "encode", "load", "save"]

log = logging.getLogger(__name__)


def encode(estimator: Any) -> Encoded:
    """mlgate's own format where it describes the estimator (every allowlisted one), else skops."""
    try:
        return Encoded(ARRAYS, arrays.encode(estimator))
    except arrays.Unencodable as exc:
        log.warning("saving with skops: mlgate's format does not describe %s", exc)
        from workers.formats import skops_format  # rarely needed: not imported until it is

        return Encoded(SKOPS, skops_format.dumps(estimator))


def decode(encoded: Encoded, model_id: str, features: Sequence[str], max_bytes: int) -> Any:
    """Rebuild the estimator (only allowlisted types, whatever the format), then check its
    fitted structure, so nothing crafted reaches scikit-learn's unchecked code."""
    data = encoded.data
    if encoded.form == ARRAYS:
        try:
            return _checked(
                lambda: arrays.decode(data, max_bytes), model_id, features, arrays.Malformed
            )
        except arrays.TooLarge as exc:
            raise ResourceExhausted(
                f"model {model_id} would take {exc.size / 2**20:.0f} MiB or more to load, over "
                f"this worker's limit of {max_bytes / 2**20:.0f} MiB (MLGATE_MAX_MODEL_BYTES); "
                "it was not loaded"
            ) from None
    from workers.formats import skops_format

    skops_format.check_archive(data, model_id, max_bytes)
    return _checked(lambda: skops_format.loads(data), model_id, features)


def _checked(
    load: Callable[[], Any],
    model_id: str,
    features: Sequence[str],
    *invalid: type[Exception],
) -> Any:
    """The loaded model once ``check_fitted`` accepts it; whatever a loader trips over is damage."""
    refused: tuple[type[Exception], ...] = (InvalidModel, *invalid)
    try:
        model = load()
        check_fitted(model, features)
    except refused as exc:
        raise IntegrityError(
            f"model {model_id} is not a valid model: {exc}; it was not loaded"
        ) from None
    except (MLGateError, arrays.TooLarge):
        raise
    except Exception as exc:
        raise IntegrityError(f"model {model_id} could not be loaded: {exc}") from None
    return model


def load(models: ModelRepository, model_id: str) -> tuple[models_pb2.Model, Any]:
    """The record and the estimator, after checking version, size and digest."""
    record, form = models.get_with_format(model_id)
    if record.sklearn_version != sklearn_version():
        raise FailedPrecondition(
            f"model {model_id} was saved with scikit-learn {record.sklearn_version} but this "
            f"worker runs {sklearn_version()}; retrain it"
        )
    encoded = models.artifact(model_id, record, form)
    features = [f.name for f in record.features]
    model = decode(encoded, model_id, features, models.max_bytes)
    # Results and ModelInfer's outputs take their classes, shapes and datatypes from the record,
    # their values from the model: the two must agree, as ``save`` recorded them.
    if _classes(model) != list(record.classes):
        raise IntegrityError(
            f"model {model_id} is not a valid model: its classes disagree with its manifest; "
            "it was not loaded"
        )
    return record, model


def _classes(model: Any) -> list[Any]:
    return values([plain(c) for c in getattr(model, "classes_", [])])


def save(models: ModelRepository, record: models_pb2.Model, estimator: Any) -> models_pb2.Model:
    """Store the estimator's artifact, then its manifest (with the estimator's classes); the
    record with digest and size set."""
    del record.classes[:]
    record.classes.extend(_classes(estimator))
    return models.save_encoded(record, encode(estimator))
