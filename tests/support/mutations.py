"""Mutations of an artifact in mlgate's format, as someone with write access to the object store
could make them, for the crafted-artifact fuzzer.

An artifact is a JSON document and a buffer of arrays (``workers.formats.arrays``). Its fields are
every node of the document (values, class names, array references), every array's entry in the
table (dtype, shape, offset) and every array's contents. A mutation changes one field, or
resizes coherently: one size (a number of classes, of trees, of features) changed everywhere it
appears in one object, as a crafted artifact must to pass checks that compare sizes.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
from hypothesis import strategies as st

from workers.formats import arrays
from workers.formats.vocabulary import named_dtype

__all__ = ["Field", "coherent", "fields", "mutate", "mutation"]


def _split(artifact: bytes) -> tuple[dict[str, Any], bytearray]:
    head = len(arrays.MAGIC) + 8
    (length,) = struct.unpack("<Q", artifact[len(arrays.MAGIC) : head])
    return json.loads(artifact[head : head + length]), bytearray(artifact[head + length :])


def _join(document: dict[str, Any], buffer: bytearray) -> bytes:
    text = json.dumps(document, allow_nan=True).encode()
    return arrays.MAGIC + struct.pack("<Q", len(text)) + text + bytes(buffer)


#: A field of the saved state: ("json", path) for a node of the document under its root,
#: ("table", i, slot) for array i's dtype (0), shape (1) or offset (2), ("data", i) for its bytes.
Field = tuple[Any, ...]


def _paths(node: Any, path: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*path, i))


def _kind_of(path: tuple[Any, ...]) -> tuple[Any, ...]:
    """The path with its list positions erased: the same attribute of every tree of a forest."""
    return tuple("*" if isinstance(key, int) else key for key in path)


def fields(artifact: bytes) -> dict[tuple[Any, ...], list[Field]]:
    """Every field of the artifact's saved state, grouped by kind: one attribute of one class
    (of every member of an ensemble alike), or the table entry or bytes of the arrays it holds."""
    document, _ = _split(artifact)
    groups: dict[tuple[Any, ...], list[Field]] = {}
    referenced: dict[int, tuple[Any, ...]] = {}
    for path in _paths(document["root"], ()):
        node = _get(document["root"], path)
        groups.setdefault(("json", *_kind_of(path)), []).append(("json", path))
        if isinstance(node, dict) and isinstance(node.get("$a"), int):
            referenced.setdefault(node["$a"], _kind_of(path))
    for i in range(len(document["arrays"])):
        where = referenced.get(i, ("unreferenced",))
        for slot in range(3):
            groups.setdefault(("table", slot, *where), []).append(("table", i, slot))
        groups.setdefault(("data", *where), []).append(("data", i))
    return groups


_EDGE_INTS = [0, 1, -1, 2, 3, -2, 255, 256, 2**31 - 1, 2**32 + 1, 2**63 - 1, -(2**63), 10**9]
_EDGE_FLOATS = [math.nan, math.inf, -math.inf, 0.0, -1.0, 0.5, 1e100, 1e300, -1e300, 5e-324]
_WORDS = [
    "", "zero", "prior", "mean", "quantile", "stratified", "uniform", "constant", "log_loss",
    "exponential", "squared_error", "poisson", "gamma", "absolute_error", "huber", "auto",
    "ignore", "error", "passthrough", "drop", "binary", "multiclass", "multilabel-indicator",
    "liblinear", "sag", "best", "random", "float64", "node", "predictor_node", "<f8", "|u1",
]  # fmt: skip
_DTYPES = ["<f8", "<f4", "<i8", "<i4", "<u4", "|u1", "|b1", "<U4", "node", "predictor_node", "|O"]


def _values(document: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values a document node may be replaced with, including parts of the same document."""
    subtrees = [_get(document["root"], p) for p in _paths(document["root"], ())]
    count = len(document["arrays"])
    return st.one_of(
        st.sampled_from([None, True, False, *_EDGE_INTS, *_EDGE_FLOATS, *_WORDS]),
        st.integers(),
        st.floats(),
        st.text(max_size=6),
        st.builds(lambda i: {"$a": i}, st.integers(-1, count)),
        st.builds(
            lambda kind, v: {"$s": kind, "v": v},
            st.sampled_from(["float64", "int64", "uint8", "bool_", "float32", "str"]),
            st.sampled_from([*_EDGE_INTS, *_EDGE_FLOATS]),
        ),
        st.sampled_from([[], {}, {"$t": []}, {"$d": {}}, {"$o": [2], "v": [None, 1]}]),
        st.sampled_from(subtrees).map(copy.deepcopy),
    )


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


def _table_value(entry: list[Any], slot: int, data: st.DataObject) -> Any:
    if slot == 0:
        return data.draw(st.sampled_from(_DTYPES))
    if slot == 2:
        offset = entry[2] if isinstance(entry[2], int) else 0
        return offset + data.draw(st.sampled_from([-16, -8, -1, 1, 8, 16, 10**12]))
    shape = list(entry[1]) if isinstance(entry[1], list) else []
    how = data.draw(st.sampled_from(["dim", "drop", "add", "empty"]))
    if how == "dim" and shape:
        axis = data.draw(st.integers(0, len(shape) - 1))
        near = [shape[axis] - 1, shape[axis] + 1] if isinstance(shape[axis], int) else []
        shape[axis] = data.draw(st.sampled_from([*near, *_EDGE_INTS]))
    elif how == "drop" and shape:
        shape.pop()
    elif how == "add":
        shape.append(data.draw(st.sampled_from([0, 1, 2, 3])))
    else:
        shape = [0] * len(shape)
    return shape


def _write(buffer: bytearray, entry: list[Any], data: st.DataObject) -> None:
    """Change one element of an array's contents, or a few of its bytes."""
    dtype = named_dtype(entry[0])
    count = math.prod(entry[1])
    if count == 0 or not data.draw(st.booleans()):
        size = count * dtype.itemsize
        if size:
            start = entry[2] + data.draw(st.integers(0, size - 1))
            buffer[start : start + 1] = bytes([data.draw(st.integers(0, 255))])
        return
    view = np.frombuffer(buffer, dtype=dtype, count=count, offset=entry[2]).reshape(-1)
    index = data.draw(st.integers(0, count - 1))
    name = data.draw(st.sampled_from(dtype.names)) if dtype.names else None
    target = view[name] if name else view
    kind = target.dtype.kind
    if kind == "f":
        target[index] = data.draw(st.sampled_from(_EDGE_FLOATS))
    elif kind in "iub":
        bits = 8 * target.dtype.itemsize
        value = data.draw(st.sampled_from([*_EDGE_INTS, count - 1, count, count + 1]))
        target.view(f"u{target.dtype.itemsize}")[index] = value % 2**bits
    else:
        target[index] = data.draw(st.text(max_size=4))


def mutation(artifact: bytes, data: st.DataObject) -> bytes:
    """One field of ``artifact`` changed: replaced, or removed from the document."""
    document, buffer = _split(artifact)
    # A kind of field first, then one of its instances: an attribute every tree of a forest has
    # is one choice among the model's attributes, not a hundred.
    groups = fields(artifact)
    kind = data.draw(st.sampled_from(sorted(groups, key=repr)), label="kind")
    field = data.draw(st.sampled_from(groups[kind]), label="field")
    if field[0] == "table":
        entry = document["arrays"][field[1]]
        entry[field[2]] = _table_value(entry, field[2], data)
    elif field[0] == "data":
        # An entry an earlier mutation broke has nothing to write into.
        with contextlib.suppress(ValueError, TypeError, IndexError):
            _write(buffer, document["arrays"][field[1]], data)
    elif field[1] == ():
        document["root"] = data.draw(_values(document))
    else:
        parent = _get(document["root"], field[1][:-1])
        if data.draw(st.integers(0, 9)) == 0:
            del parent[field[1][-1]]
        else:
            parent[field[1][-1]] = data.draw(_values(document), label="value")
    return _join(document, buffer)


def _objects(node: Any, path: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    """The paths of the document's objects (``{"$c": ...}``), the root's first."""
    for found in _paths(node, path):
        value = _get(node, found)
        if isinstance(value, dict) and "$c" in value and isinstance(value.get("d"), dict):
            yield found


def _sizes(state: dict[str, Any], table: list[Any]) -> set[int]:
    """The sizes an object states: its whole numbers and its arrays' dimensions."""
    found = set()
    for value in state.values():
        if type(value) is int:
            found.add(value)
        elif isinstance(value, dict) and isinstance(value.get("$a"), int):
            found.update(table[value["$a"]][1])
        elif isinstance(value, dict) and value.get("$s") and type(value.get("v")) is int:
            found.add(value["v"])
        elif isinstance(value, dict) and isinstance(value.get("$o"), list):
            found.update(value["$o"])
    return {n for n in found if isinstance(n, int) and 1 <= n <= 1000}


def _resize_array(entry: list[Any], old: int, new: int, buffer: bytearray) -> None:
    """Every dimension ``old`` of the array becomes ``new``; its data is repeated to fill it."""
    dtype = named_dtype(entry[0])
    shape = [new if n == old else n for n in entry[1]]
    have = math.prod(entry[1]) * dtype.itemsize
    need = math.prod(shape) * dtype.itemsize
    if need > have:
        chunk = bytes(buffer[entry[2] : entry[2] + have]) or b"\0"
        buffer.extend(b"\0" * (-len(buffer) % 16))
        entry[2] = len(buffer)
        buffer.extend((chunk * (need // len(chunk) + 1))[:need])
    entry[1] = shape


def _resize(state: dict[str, Any], table: list[Any], old: int, new: int, buffer: bytearray) -> None:
    for name, value in state.items():
        if type(value) is int and value == old:
            state[name] = new
        elif isinstance(value, dict) and isinstance(value.get("$a"), int):
            with contextlib.suppress(ValueError, TypeError, IndexError):
                _resize_array(table[value["$a"]], old, new, buffer)
        elif isinstance(value, dict) and value.get("$s") and value.get("v") == old:
            value["v"] = new
        elif isinstance(value, dict) and value.get("$o") == [old]:
            items = value.get("v") if isinstance(value.get("v"), list) else []
            items = items or [None]
            value["$o"] = [new]
            value["v"] = (items * (new // len(items) + 1))[:new]


def coherent(artifact: bytes, data: st.DataObject) -> bytes:
    """One size an object states (a number of classes, outputs, trees, features) changed to
    another in every attribute of that object that states it."""
    document, buffer = _split(artifact)
    table = document["arrays"]
    objects = {_kind_of(path): path for path in _objects(document["root"], ())}
    if not objects:  # an earlier mutation left none
        return artifact
    path = objects[data.draw(st.sampled_from(sorted(objects, key=repr)), label="object")]
    state = _get(document["root"], path)["d"]
    try:
        sizes = sorted(_sizes(state, table))
    except (IndexError, KeyError, TypeError):  # a reference an earlier mutation broke
        return artifact
    if not sizes:
        return artifact
    old = data.draw(st.sampled_from(sizes), label="size")
    new = data.draw(st.sampled_from([0, 1, 2, old - 1, old + 1, 2 * old]), label="new size")
    _resize(state, table, old, new, buffer)
    return _join(document, buffer)


def mutate(artifact: bytes, data: st.DataObject) -> bytes:
    """``artifact`` with one to three changes: of one field, or one size throughout an object."""
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        if data.draw(st.integers(0, 2), label="coherent") == 0:
            artifact = coherent(artifact, data)
        else:
            artifact = mutation(artifact, data)
    return artifact
