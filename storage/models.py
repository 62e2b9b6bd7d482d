"""Model artifacts and their manifests in the object store.

A model is ``models/<id>/<sha256>.<format's extension>`` (the estimator as data: mlgate's own
format or skops, written and read by the workers' ``workers.formats``; never pickle) plus
``models/<id>/manifest.json`` written last: the model's record with the artifact's digest, format
and scikit-learn version. A model without a manifest does not exist; a rewrite (a redelivered
training job) never exposes a half-written artifact because the digest names it, and whatever an
earlier attempt left beside it is removed once the manifest is written.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from importlib import metadata
from typing import BinaryIO

from google.protobuf import json_format

from mlgate.errors import NotFound, ResourceExhausted
from mlgate.ids import check_model_id
from mlgate.quoting import quote
from mlgate.v1 import models_pb2
from storage.base import ObjectStore
from storage.errors import IntegrityError, ObjectNotFound

__all__ = [
    "ARRAYS",
    "DEFAULT_MAX_MODEL_BYTES",
    "FORMATS",
    "SKOPS",
    "Encoded",
    "ModelRepository",
    "sklearn_version",
]

log = logging.getLogger(__name__)

SKOPS = "skops"
#: mlgate's own format (``workers.formats.arrays.FORMAT``, named here without importing
#: scikit-learn).
ARRAYS = "mlgate-arrays-v1"
#: Each format mlgate reads, and the extension its artifacts are stored under.
FORMATS = {ARRAYS: "model", SKOPS: "skops"}
DEFAULT_MAX_MODEL_BYTES = 512 * 1024 * 1024
_DIGEST = re.compile(r"[0-9a-f]{64}")


def _artifact_key(model_id: str, digest: str, form: str) -> str:
    return f"models/{model_id}/{digest}.{FORMATS[form]}"


def _manifest_key(model_id: str) -> str:
    return f"models/{model_id}/manifest.json"


@functools.cache
def sklearn_version() -> str:
    """The installed scikit-learn's version, read without importing it."""
    return metadata.version("scikit-learn")


@dataclass(frozen=True)
class Encoded:
    """An estimator's artifact: its bytes and their format."""

    form: str
    data: bytes


class ModelRepository:
    """Saves, reads, loads and deletes models by id."""

    def __init__(self, store: ObjectStore, max_bytes: int = DEFAULT_MAX_MODEL_BYTES) -> None:
        self._store = store
        self._max_bytes = max_bytes

    @property
    def max_bytes(self) -> int:
        """The largest artifact this repository saves or reads (``MLGATE_MAX_MODEL_BYTES``)."""
        return self._max_bytes

    def save_encoded(self, record: models_pb2.Model, encoded: Encoded) -> models_pb2.Model:
        """Store the artifact, then the manifest; returns the record with digest and size set."""
        check_model_id(record.id)
        data = encoded.data
        if len(data) > self._max_bytes:
            # Saving it would store a model no worker may load.
            raise ResourceExhausted(
                f"the trained model is {len(data) / 2**20:.0f} MiB, over the limit of "
                f"{self._max_bytes / 2**20:.0f} MiB (MLGATE_MAX_MODEL_BYTES); train a smaller "
                "model (fewer or shallower trees) or raise the limit"
            )
        digest = hashlib.sha256(data).hexdigest()
        saved = models_pb2.Model()
        saved.CopyFrom(record)
        saved.sha256 = digest
        saved.size_bytes = len(data)
        saved.sklearn_version = sklearn_version()
        artifact = _artifact_key(record.id, digest, encoded.form)
        manifest = {"format": encoded.form, "model": json_format.MessageToDict(saved)}
        # The artifact before its manifest, synced together (one disk round trip, not two: the
        # save sits between a fit and its job's outcome).
        self._store.put_in_order(
            [(artifact, data), (_manifest_key(record.id), json.dumps(manifest, indent=2).encode())]
        )
        # An earlier save of this model, or an attempt that died before its manifest.
        for key in list(self._store.list(f"models/{record.id}/")):
            if key not in (artifact, _manifest_key(record.id)):
                self._store.delete(key)
        return saved

    def discard_unfinished(self, model_id: str) -> None:
        """Remove what an attempt stored for a model whose manifest was never written."""
        if not self._store.exists(_manifest_key(check_model_id(model_id))):
            for key in list(self._store.list(f"models/{model_id}/")):
                self._store.delete(key)

    def _manifest(self, model_id: str) -> models_pb2.Model | None:
        found = self._manifest_and_format(model_id)
        return None if found is None else found[0]

    def _manifest_and_format(self, model_id: str) -> tuple[models_pb2.Model, str] | None:
        try:
            raw = self._store.get(_manifest_key(model_id))
        except ObjectNotFound:
            return None
        except IntegrityError as exc:
            raise IntegrityError(f"model {model_id} has a corrupt manifest: {exc}") from exc
        corrupt = f"model {model_id} has a corrupt manifest: it is not the JSON mlgate writes"
        try:
            manifest = json.loads(raw)
        except ValueError as exc:
            raise IntegrityError(corrupt) from exc
        if not isinstance(manifest, dict):
            raise IntegrityError(corrupt)
        form = manifest.get("format")
        if form not in FORMATS:
            raise IntegrityError(f"model {model_id} has an unknown format {quote(form)}")
        try:
            record = json_format.ParseDict(manifest["model"], models_pb2.Model())
        except (KeyError, TypeError, AttributeError, json_format.ParseError) as exc:
            raise IntegrityError(corrupt) from exc
        # The digest names the artifact's key: anything but one (a path) must not reach the store.
        if not _DIGEST.fullmatch(record.sha256):
            raise IntegrityError(
                f"model {model_id} has a corrupt manifest: its sha256 is not a SHA-256 digest"
            )
        return record, form

    def get(self, model_id: str) -> models_pb2.Model:
        """The model's record; raises NotFound."""
        return self.get_with_format(model_id)[0]

    def get_with_format(self, model_id: str) -> tuple[models_pb2.Model, str]:
        """The model's record and its artifact's format; raises NotFound."""
        found = self._manifest_and_format(check_model_id(model_id))
        if found is None:
            raise NotFound(f"model {model_id} does not exist")
        return found

    def exists(self, model_id: str) -> bool:
        return self._store.exists(_manifest_key(check_model_id(model_id)))

    def list(self) -> list[models_pb2.Model]:
        """Every readable model's record, newest first; corrupt manifests are logged and skipped."""
        records = []
        for key in self._store.list("models/"):
            if key.endswith("/manifest.json"):
                model_id = key.split("/")[1]
                try:
                    record = self._manifest(model_id)
                except IntegrityError as exc:
                    # One damaged manifest must not hide every other model; GetModel reports it.
                    log.warning("listing models: skipped %s: %s", model_id, exc)
                    continue
                if record is not None:
                    records.append(record)
        records.sort(key=lambda m: (m.create_time.ToNanoseconds(), m.id), reverse=True)
        return records

    def artifact(self, model_id: str, record: models_pb2.Model, form: str) -> Encoded:
        """The artifact of the model ``get_with_format`` described by ``record`` and ``form``,
        after checking its size and digest."""
        if record.size_bytes > self._max_bytes:
            raise ResourceExhausted(
                f"model {model_id} is {record.size_bytes / 2**20:.0f} MiB, over this worker's "
                f"limit of {self._max_bytes / 2**20:.0f} MiB (MLGATE_MAX_MODEL_BYTES)"
            )
        try:
            data = self._store.get(_artifact_key(model_id, record.sha256, form))
        except ObjectNotFound:
            raise IntegrityError(f"model {model_id} has a manifest but no artifact") from None
        if len(data) > self._max_bytes:
            raise ResourceExhausted(
                f"model {model_id} is {len(data) / 2**20:.0f} MiB, over this worker's "
                f"limit of {self._max_bytes / 2**20:.0f} MiB (MLGATE_MAX_MODEL_BYTES)"
            )
        if hashlib.sha256(data).hexdigest() != record.sha256:
            raise IntegrityError(
                f"model {model_id} failed its integrity check: the sha256 does not match"
            )
        return Encoded(form, data)

    def delete(self, model_id: str) -> None:
        """Remove the manifest first, so the model is gone before its bytes are; raises NotFound."""
        record = self.get(model_id)
        self._store.delete(_manifest_key(model_id))
        for key in list(self._store.list(f"models/{model_id}/")):
            self._store.delete(key)
        del record

    def export(self, model_id: str, target: BinaryIO) -> tuple[models_pb2.Model, str]:
        """Write the model's artifact into ``target`` exactly as stored; the record and format.
        Raises IntegrityError if the bytes are missing or do not match the manifest's digest."""
        record, form = self.get_with_format(model_id)
        start = target.tell()
        try:
            self._store.download(_artifact_key(model_id, record.sha256, form), target)
        except ObjectNotFound:
            raise IntegrityError(f"model {model_id} has a manifest but no artifact") from None
        target.seek(start)
        digest = hashlib.sha256()
        while piece := target.read(1024 * 1024):
            digest.update(piece)
        if digest.hexdigest() != record.sha256:
            raise IntegrityError(
                f"model {model_id} failed its integrity check: the sha256 does not match"
            )
        target.seek(start)
        return record, form
