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

import functools
import json
import math
import struct
from typing import Any

import numpy as np
from sklearn import ensemble, linear_model, tree
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble._hist_gradient_boosting.binning import _BinMapper
from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, LabelBinarizer, LabelEncoder, OneHotEncoder
from sklearn.tree._tree import NODE_DTYPE, Tree

__all__ = ["FORMAT", "MAGIC", "Malformed", "TooLarge", "Unencodable", "decode", "encode"]

FORMAT = "mlgate-arrays-v1"  # storage.models.ARRAYS: named there without importing this
MAGIC = b"MLGATE-ARRAYS-1\n"
_ALIGN = 16

_CLASS_LIST: list[type] = [
    ensemble.RandomForestRegressor,
    ensemble.RandomForestClassifier,
    ensemble.ExtraTreesRegressor,
    ensemble.ExtraTreesClassifier,
    ensemble.GradientBoostingRegressor,
    ensemble.GradientBoostingClassifier,
    ensemble.HistGradientBoostingRegressor,
    ensemble.HistGradientBoostingClassifier,
    tree.DecisionTreeRegressor,
    tree.DecisionTreeClassifier,
    tree.ExtraTreeRegressor,
    tree.ExtraTreeClassifier,
    linear_model.LinearRegression,
    linear_model.Ridge,
    linear_model.RidgeClassifier,
    linear_model.LogisticRegression,
    DummyRegressor,
    DummyClassifier,
    Pipeline,
    ColumnTransformer,
    OneHotEncoder,
    FunctionTransformer,
    LabelBinarizer,
    LabelEncoder,
    TreePredictor,
    _BinMapper,
]
#: The classes an artifact may name, by their short name.
CLASSES: dict[str, type] = {cls.__name__: cls for cls in _CLASS_LIST}
# Estimators whose ``_loss`` is compiled code, rebuilt by their ``_get_loss`` on load.
_LOSS_OWNERS = (
    ensemble.GradientBoostingRegressor,
    ensemble.GradientBoostingClassifier,
    ensemble.HistGradientBoostingRegressor,
    ensemble.HistGradientBoostingClassifier,
)
_RECORDS: dict[str, np.dtype[Any]] = {
    "node": np.dtype(NODE_DTYPE),
    "predictor_node": np.dtype(PREDICTOR_RECORD_DTYPE),
}
_SCALAR_TYPES: dict[str, type] = {
    t.__name__: t
    for t in (np.float64, np.float32, np.int64, np.int32, np.uint8, np.uint32, np.uint64, np.bool_)
}
_PLAIN_KINDS = "biufU"
#: What parsing a document and building its objects may take per byte of JSON: measured at up
#: to 24 for parsing alone (``[{}, {}, ...]``), as much again for the objects built from it.
DOCUMENT_FACTOR = 48


class Unencodable(ValueError):
    """The object holds something this format does not describe; save it another way."""


class Malformed(ValueError):
    """The bytes are not an artifact this format could have written; the message says why."""


class TooLarge(ValueError):
    """Decoding would allocate more than the limit it was given; nothing that large was made."""

    def __init__(self, size: int) -> None:
        super().__init__(f"decoding needs at least {size} bytes")
        self.size = size


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise Malformed(reason)


@functools.lru_cache(maxsize=64)
def _dtype_name(dtype: np.dtype[Any]) -> str:
    # Cached: comparing with the record dtypes costs more than the rest of a small array's encoding.
    for name, record in _RECORDS.items():
        if dtype == record:
            return name
    if dtype.kind in _PLAIN_KINDS and dtype.fields is None and dtype.subdtype is None:
        return dtype.str
    raise Unencodable(f"an array of {dtype}")


def _dtype_of(name: object) -> np.dtype[Any]:
    _require(isinstance(name, str), "an array's dtype is not a name")
    assert isinstance(name, str)
    return _named_dtype(name)


@functools.lru_cache(maxsize=64)
def _named_dtype(name: str) -> np.dtype[Any]:
    if name in _RECORDS:
        return _RECORDS[name]
    try:
        dtype = np.dtype(name)
    except TypeError:
        raise Malformed(f"unknown dtype {name[:40]!r}") from None
    _require(
        dtype.kind in _PLAIN_KINDS and dtype.fields is None and dtype.subdtype is None,
        f"arrays of {dtype} are not allowed",
    )
    return dtype


def _own_attributes(cls: type, names: Any) -> None:
    """An attribute named like a method or property of its class would replace it."""
    for name in names:
        if (cls, name) not in _CHECKED_NAMES:
            _check_name(cls, name)
            _CHECKED_NAMES.add((cls, name))


# (class, attribute) pairs found harmless: a forest repeats its trees' names a hundred times.
_CHECKED_NAMES: set[tuple[type, str]] = set()


def _check_name(cls: type, name: object) -> None:
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("__"):
        raise Malformed(f"{cls.__name__} has an invalid attribute name")
    if hasattr(cls, name):
        raise Malformed(f"{cls.__name__}.{name} would replace what the class defines")


class _Writer:
    def __init__(self) -> None:
        self.arrays: list[list[Any]] = []
        self.chunks: list[bytes] = []
        self.size = 0

    def array(self, value: np.ndarray) -> dict[str, Any]:
        if value.dtype == object:
            return {"$o": list(value.shape), "v": [self.value(x) for x in value.ravel()]}
        data = np.ascontiguousarray(value).tobytes()
        self.arrays.append([_dtype_name(value.dtype), list(value.shape), self.size])
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
        if isinstance(value, type) and value.__name__ in _SCALAR_TYPES:
            return {"$type": value.__name__}
        cls = type(value)
        if CLASSES.get(cls.__name__) is not cls:
            raise Unencodable(f"an object of type {cls.__module__}.{cls.__qualname__}")
        state = dict(vars(value))
        loss = isinstance(value, _LOSS_OWNERS) and "_loss" in state
        if loss:
            del state["_loss"]
        try:
            _own_attributes(cls, state)
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


class _Reader:
    def __init__(self, arrays: Any, buffer: bytearray, limit: int, spent: int) -> None:
        _require(isinstance(arrays, list), "the array table is not a list")
        self._table = arrays
        self._buffer = buffer
        self._limit = limit
        self._spent = spent
        self._viewed: set[int] = set()  # arrays counted once: views share the buffer
        self._copied: set[int] = set()  # arrays a tree copied: each copy is counted

    def _spend(self, size: int) -> None:
        self._spent += size
        if self._spent > self._limit:
            raise TooLarge(self._spent)

    def array(self, ref: object) -> np.ndarray:
        array, index = self._lookup(ref)
        if index not in self._viewed:
            self._viewed.add(index)
            self._spend(array.nbytes)
        return array

    def _tree_array(self, ref: object) -> np.ndarray:
        """An array a tree copies into its own memory: counted per copy, and never shared."""
        array, index = self._lookup(ref)
        _require(index not in self._copied, "an array backs more than one tree")
        self._copied.add(index)
        return array

    def _lookup(self, ref: object) -> tuple[np.ndarray, int]:
        index = ref.get("$a") if isinstance(ref, dict) else None
        if not (isinstance(index, int) and 0 <= index < len(self._table)):
            raise Malformed("an array reference points outside the table")
        entry = self._table[index]
        _require(isinstance(entry, list) and len(entry) == 3, "an array entry is malformed")
        name, shape, offset = entry
        dtype = _dtype_of(name)
        _require(
            isinstance(shape, list)
            and len(shape) <= 4
            and all(type(n) is int and n >= 0 for n in shape)
            and type(offset) is int
            and offset >= 0,
            "an array's shape or offset is malformed",
        )
        count = math.prod(shape)
        _require(
            offset + count * dtype.itemsize <= len(self._buffer), "an array runs past the data"
        )
        flat = np.frombuffer(self._buffer, dtype=dtype, count=count, offset=offset)
        return flat.reshape(shape), index

    def value(self, node: Any) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.value(x) for x in node]
        _require(isinstance(node, dict), "an unknown value")
        if "$a" in node:
            return self.array(node)
        if "$c" in node:
            return self.instance(node)
        if "$t" in node:
            _require(isinstance(node["$t"], list), "a malformed tuple")
            return tuple(self.value(x) for x in node["$t"])
        if "$d" in node:
            _require(isinstance(node["$d"], dict), "a malformed dict")
            return {k: self.value(v) for k, v in node["$d"].items()}
        if "$s" in node:
            kind = _SCALAR_TYPES.get(node["$s"])
            _require(
                kind is not None and isinstance(node.get("v"), (bool, int, float)), "a bad scalar"
            )
            assert kind is not None
            return kind(node["v"])
        if "$o" in node:
            return self.objects(node)
        if "$slice" in node:
            bounds = node["$slice"]
            _require(
                isinstance(bounds, list)
                and len(bounds) == 3
                and all(b is None or type(b) is int for b in bounds),
                "a malformed slice",
            )
            return slice(*bounds)
        if "$tree" in node:
            return self.tree(node)
        if "$type" in node:
            kind = _SCALAR_TYPES.get(node["$type"])
            _require(kind is not None, "an unknown type")
            return kind
        raise Malformed("an unknown value")

    def objects(self, node: dict[str, Any]) -> np.ndarray:
        shape, items = node["$o"], node.get("v")
        if not (
            isinstance(shape, list)
            and all(type(n) is int and n >= 0 for n in shape)
            and isinstance(items, list)
            and len(items) == math.prod(shape)
        ):
            raise Malformed("a malformed object array")
        result: np.ndarray = np.empty(len(items), dtype=object)
        for i, item in enumerate(items):
            result[i] = self.value(item)
        return result.reshape(shape)

    def instance(self, node: dict[str, Any]) -> Any:
        cls = CLASSES.get(node["$c"]) if isinstance(node["$c"], str) else None
        _require(cls is not None, f"the class {str(node['$c'])[:60]!r} is not allowed")
        assert cls is not None
        state = node.get("d")
        _require(isinstance(state, dict), "an object without attributes")
        assert isinstance(state, dict)
        _own_attributes(cls, state)
        obj: Any = object.__new__(cls)
        obj.__dict__.update({name: self.value(v) for name, v in state.items()})
        # The loss is rebuilt once the parameters it is built from are checked (check_fitted).
        _require(node.get("loss") in (None, True), "a malformed loss marker")
        _require(
            node.get("loss") is None or isinstance(obj, _LOSS_OWNERS),
            "a loss on an estimator without one",
        )
        return obj

    def tree(self, node: dict[str, Any]) -> Tree:
        head = node["$tree"]
        _require(isinstance(head, list) and len(head) == 3, "a malformed tree")
        n_features, n_classes_ref, n_outputs = head
        n_classes = self.array(n_classes_ref)
        _require(
            type(n_features) is int
            and type(n_outputs) is int
            and 1 <= n_outputs == len(n_classes)
            and n_features >= 1
            and n_classes.dtype.kind == "i",
            "a tree's sizes are malformed",
        )
        widest = max(n_classes.tolist())
        nodes, values = self._tree_array(node.get("nodes")), self._tree_array(node.get("values"))
        _require(
            nodes.dtype == NODE_DTYPE
            and nodes.ndim == 1
            and values.ndim == 3
            and values.shape[0] == len(nodes)
            and values.shape[1:] == (n_outputs, widest),
            "a tree's arrays disagree with its sizes",
        )
        self._spend(nodes.nbytes + values.nbytes)  # what the tree is about to copy
        result = Tree(n_features, np.asarray(n_classes, dtype=np.intp), n_outputs)
        result.__setstate__(
            {
                "max_depth": node.get("max_depth"),
                "node_count": len(nodes),
                "nodes": nodes,
                "values": values,
            }
        )
        return result


def decode(data: bytes, max_bytes: int = 2**62) -> Any:
    """The object ``encode`` described; raises Malformed for anything it could not have written,
    and TooLarge, before allocating it, if it would take more than ``max_bytes`` in memory."""
    head = len(MAGIC) + 8
    _require(data[: len(MAGIC)] == MAGIC and len(data) >= head, "it is not an mlgate artifact")
    (length,) = struct.unpack("<Q", data[len(MAGIC) : head])
    _require(head + length <= len(data), "the document runs past the artifact")
    spent = length * DOCUMENT_FACTOR
    if spent > max_bytes:
        raise TooLarge(spent)
    try:
        document = json.loads(data[head : head + length])
    except (ValueError, RecursionError) as exc:
        raise Malformed(f"the document is not JSON: {exc}") from None
    _require(isinstance(document, dict), "the document is not an object")
    reader = _Reader(document.get("arrays"), bytearray(data[head + length :]), max_bytes, spent)
    try:
        return reader.value(document.get("root"))
    except RecursionError:
        raise Malformed("the object graph is nested too deeply") from None
