"""skops, the format for what mlgate's own (``workers.formats.arrays``) does not describe, and for
models that earlier versions saved with it: loaded only from types mlgate trusts, and only once the
archive is known not to inflate past the worker's limit."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import skops.io as sio

from mlgate.errors import ResourceExhausted
from mlgate.quoting import listing
from storage.errors import IntegrityError

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
        raise ResourceExhausted(
            f"model {model_id} unpacks to {total / 2**20:.0f} MiB, over this worker's limit of "
            f"{max_bytes / 2**20:.0f} MiB (MLGATE_MAX_MODEL_BYTES); it was not loaded"
        )


def check_archive(data: bytes, model_id: str, max_bytes: int) -> None:
    """Refuse, before unpacking anything, an archive too large or holding untrusted types."""
    _check_unpacked_size(data, model_id, max_bytes)
    untrusted = [t for t in sio.get_untrusted_types(data=data) if t not in TRUSTED_TYPES]
    if untrusted:
        raise IntegrityError(
            f"model {model_id} contains types mlgate does not trust ({listing(untrusted)}); "
            "it was not loaded"
        )


def loads(data: bytes) -> Any:
    """The estimator an archive ``check_archive`` accepted holds, built from trusted types only."""
    return sio.loads(data, trusted=TRUSTED_TYPES)
