"""mlgate's model format: the fitted state of allowlisted estimators as data, never as code.

An artifact is ``MAGIC``, the length of a JSON document, the document, then one buffer of array
bytes. The document describes the object graph: JSON values for plain ones, ``{"$a": i}`` for the
i-th array (dtype, shape and offset in ``arrays``), and tagged objects for the few other things a
fitted estimator holds. A class is named, never imported: only ``CLASSES`` (the allowlisted
estimators and the parts they are made of) can be built, by ``object.__new__`` and setting their
attributes, so loading runs no code from the artifact. An attribute may not shadow anything its
class defines (a method or property), and arrays may hold numbers, booleans, fixed-width strings,
or scikit-learn's two tree-node records, never Python objects.

What a fitted model needs only while fitting is not kept: random generators are stored as None,
and loss objects (compiled code) are rebuilt from the estimator's own parameters once
``workers.formats.fitted.check_fitted`` has checked them. Loading checks the document's shape as
it goes, and bounds what decoding allocates before allocating it (``TooLarge``): the document's
objects, and each tree's copy of its node and value arrays, which no two trees may share (so a
small artifact cannot decode into thousands of copies of one large tree). ``check_fitted`` then
checks the fitted structure before anything runs on it, as for every format.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
from sklearn.tree._tree import Tree

from workers.formats.categorical import artifact_preprocessor
from workers.formats.reader import Reader
from workers.formats.vocabulary import (
    CLASSES,
    HIST_BOOSTING,
    LOSS_OWNERS,
    SCALAR_TYPES,
    Malformed,
    TooLarge,
    Unencodable,
    dtype_name,
    own_attributes,
    require,
)

__all__ = [
    "CLASSES",
    "DOCUMENT_FACTOR",
    "FORMAT",
    "MAGIC",
    "Malformed",
    "TooLarge",
    "Unencodable",
    "decode",
    "encode",
]

FORMAT = "mlgate-arrays-v1"  # storage.models.ARRAYS: named there without importing this
MAGIC = b"MLGATE-ARRAYS-1\n"
_ALIGN = 16
#: What parsing a document and building its objects may take per byte of JSON: measured at up
#: to 24 for parsing alone (``[{}, {}, ...]``), as much again for the objects built from it.
DOCUMENT_FACTOR = 48


class _Writer:
    def __init__(self) -> None:
        self.arrays: list[list[Any]] = []
        self.chunks: list[bytes] = []
        self.size = 0

    def array(self, value: np.ndarray) -> dict[str, Any]:
        if value.dtype == object:
            return {"$o": list(value.shape), "v": [self.value(x) for x in value.ravel()]}
        data = np.ascontiguousarray(value).tobytes()
        self.arrays.append([dtype_name(value.dtype), list(value.shape), self.size])
        pad = -len(data) % _ALIGN
        self.chunks.append(data + b"\0" * pad)
        self.size += len(data) + pad
        return {"$a": len(self.arrays) - 1}

    def value(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self.value(x) for x in value]
        if isinstance(value, tuple):
            return {"$t": [self.value(x) for x in value]}
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise Unencodable("a dict with keys that are not strings")
            return {"$d": {k: self.value(v) for k, v in value.items()}}
        if isinstance(value, np.ndarray):
            return self.array(value)
        if isinstance(value, np.generic):
            return {"$s": type(value).__name__, "v": value.item()}
        if isinstance(value, slice):
            return {"$slice": [value.start, value.stop, value.step]}
        if isinstance(value, (np.random.RandomState, np.random.Generator)):
            return None  # fitting's random state; prediction never draws from it
        if isinstance(value, Tree):
            return self.tree(value)
        if isinstance(value, type) and value.__name__ in SCALAR_TYPES:
            return {"$type": value.__name__}
        cls = type(value)
        if CLASSES.get(cls.__name__) is not cls:
            raise Unencodable(f"an object of type {cls.__module__}.{cls.__qualname__}")
        state = dict(vars(value))
        if isinstance(value, HIST_BOOSTING) and state.get("_preprocessor") is not None:
            # It holds a function; its encoder is enough to rebuild it (formats.categorical).
            state["_preprocessor"] = artifact_preprocessor(state["_preprocessor"])
            if state["_preprocessor"] is None:
                raise Unencodable("a feature preprocessor scikit-learn did not build")
        loss = isinstance(value, LOSS_OWNERS) and "_loss" in state
        if loss:
            del state["_loss"]
        try:
            own_attributes(cls, state)
        except Malformed as exc:
            raise Unencodable(str(exc)) from None
        encoded: dict[str, Any] = {
            "$c": cls.__name__,
            "d": {k: self.value(v) for k, v in state.items()},
        }
        if loss:
            encoded["loss"] = True
        return encoded

    def tree(self, value: Tree) -> dict[str, Any]:
        _, (n_features, n_classes, n_outputs), state = value.__reduce__()
        return {
            "$tree": [int(n_features), self.array(np.asarray(n_classes)), int(n_outputs)],
            "max_depth": int(state["max_depth"]),
            "node_count": int(state["node_count"]),
            "nodes": self.array(state["nodes"]),
            "values": self.array(state["values"]),
        }


def encode(model: Any) -> bytes:
    """The artifact of ``model``; raises Unencodable for anything outside the format."""
    writer = _Writer()
    root = writer.value(model)
    document = json.dumps(
        {"root": root, "arrays": writer.arrays}, separators=(",", ":"), allow_nan=True
    ).encode()
    return b"".join([MAGIC, struct.pack("<Q", len(document)), document, *writer.chunks])


def decode(data: bytes, max_bytes: int = 2**62) -> Any:
    """The object ``encode`` described; raises Malformed for anything it could not have written,
    and TooLarge, before allocating it, if it would take more than ``max_bytes`` in memory."""
    head = len(MAGIC) + 8
    require(data[: len(MAGIC)] == MAGIC and len(data) >= head, "it is not an mlgate artifact")
    (length,) = struct.unpack("<Q", data[len(MAGIC) : head])
    require(head + length <= len(data), "the document runs past the artifact")
    spent = length * DOCUMENT_FACTOR
    if spent > max_bytes:
        raise TooLarge(spent)
    try:
        document = json.loads(data[head : head + length])
    except (ValueError, RecursionError) as exc:
        raise Malformed(f"the document is not JSON: {exc}") from None
    require(isinstance(document, dict), "the document is not an object")
    reader = Reader(document.get("arrays"), bytearray(data[head + length :]), max_bytes, spent)
    try:
        return reader.value(document.get("root"))
    except RecursionError:
        raise Malformed("the object graph is nested too deeply") from None
