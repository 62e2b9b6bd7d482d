"""skops, the format for what mlgate's own (``workers.formats.arrays``) does not describe, and for
models that earlier versions saved with it: loaded only from types mlgate trusts, and only once the
archive is known not to inflate, or load, past the worker's limit."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import skops.io as sio

from mlgate.errors import ResourceExhausted
from mlgate.quoting import listing
from storage.errors import IntegrityError
from workers.formats.arrays import DOCUMENT_FACTOR

__all__ = ["TRUSTED_TYPES", "check_archive", "dumps", "loads"]

# Types beyond skops' own safe defaults that mlgate's allowlisted estimators contain. Loading
# fails closed: an artifact holding any other type is refused, whatever the manifest says.
TRUSTED_TYPES = [
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
]
# mlgate stores its artifacts uncompressed; real arrays never deflate anywhere near this much,
# zeros crafted to inflate a small file into gigabytes do.
_MAX_RATIO = 100
_RATIO_FROM_BYTES = 1024 * 1024


def dumps(estimator: Any) -> bytes:
    """The skops artifact of ``estimator``."""
    data: bytes = sio.dumps(estimator)
    return data


def _check_unpacked_size(data: bytes, model_id: str, max_bytes: int) -> None:
    """Refuse before unpacking an archive that would inflate past ``max_bytes`` or implausibly.

    zipfile never inflates a member beyond its declared size, so the declared sizes bound memory.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise IntegrityError(f"model {model_id} is not a readable skops archive: {exc}") from None
    for member in members:
        if member.file_size > _RATIO_FROM_BYTES and member.file_size > _MAX_RATIO * max(
            member.compress_size, 1
        ):
            raise IntegrityError(
                f"model {model_id} is not a model mlgate saved: {member.filename} would inflate "
                f"{member.compress_size} bytes to {member.file_size}; it was not loaded"
            )
    total = sum(member.file_size for member in members)
    if total > max_bytes:
        raise _too_large(model_id, f"unpacks to {total / 2**20:.0f} MiB", max_bytes)


def _too_large(model_id: str, what: str, max_bytes: int) -> ResourceExhausted:
    return ResourceExhausted(
        f"model {model_id} {what}, over this worker's limit of {max_bytes / 2**20:.0f} MiB "
        "(MLGATE_MAX_MODEL_BYTES); it was not loaded"
    )


def _check_loaded_size(data: bytes, model_id: str, max_bytes: int) -> None:
    """Refuse an archive whose schema names one array file many times: each mention loads a copy
    of it, and each tree copies its arrays again, so a small archive of thousands of trees
    sharing one large node array would take gigabytes. Counted before anything is loaded: the
    schema's objects as arrays.DOCUMENT_FACTOR estimates them, and every array each time it is
    mentioned."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sizes = {member.filename: member.file_size for member in archive.infolist()}
        spent = sizes.get("schema.json", 0) * DOCUMENT_FACTOR
        if spent > max_bytes:
            raise _too_large(model_id, "has a schema too large to parse", max_bytes)
        try:
            schema = json.loads(archive.read("schema.json"))
        except (KeyError, ValueError, RecursionError) as exc:
            raise IntegrityError(f"model {model_id} has no readable skops schema: {exc}") from None
    pending = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                spent += sizes.get(node["file"], 0)
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    if spent > max_bytes:
        raise _too_large(model_id, f"would take {spent / 2**20:.0f} MiB to load", max_bytes)


def check_archive(data: bytes, model_id: str, max_bytes: int) -> None:
    """Refuse, before unpacking anything, an archive too large or holding untrusted types."""
    _check_unpacked_size(data, model_id, max_bytes)
    _check_loaded_size(data, model_id, max_bytes)
    untrusted = [t for t in sio.get_untrusted_types(data=data) if t not in TRUSTED_TYPES]
    if untrusted:
        raise IntegrityError(
            f"model {model_id} contains types mlgate does not trust ({listing(untrusted)}); "
            "it was not loaded"
        )


def loads(data: bytes) -> Any:
    """The estimator an archive ``check_archive`` accepted holds, built from trusted types only."""
    return sio.loads(data, trusted=TRUSTED_TYPES)
