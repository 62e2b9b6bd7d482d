"""Reading an artifact's document back into objects, checking its shape as it goes and counting
what it allocates: the objects ``workers.formats.arrays.decode`` returns."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.tree._tree import NODE_DTYPE, Tree

from workers.formats.vocabulary import (
    CLASSES,
    LOSS_OWNERS,
    SCALAR_TYPES,
    Malformed,
    TooLarge,
    dtype_of,
    own_attributes,
    require,
)

__all__ = ["Reader"]


class Reader:
    """Builds the objects a document describes, from arrays viewed in its buffer, spending at
    most ``limit`` bytes (``spent`` already) on what it allocates."""

    def __init__(self, arrays: Any, buffer: bytearray, limit: int, spent: int) -> None:
        require(isinstance(arrays, list), "the array table is not a list")
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
        require(index not in self._copied, "an array backs more than one tree")
        self._copied.add(index)
        return array

    def _lookup(self, ref: object) -> tuple[np.ndarray, int]:
        index = ref.get("$a") if isinstance(ref, dict) else None
        if not (isinstance(index, int) and 0 <= index < len(self._table)):
            raise Malformed("an array reference points outside the table")
        entry = self._table[index]
        require(isinstance(entry, list) and len(entry) == 3, "an array entry is malformed")
        name, shape, offset = entry
        dtype = dtype_of(name)
        require(
            isinstance(shape, list)
            and len(shape) <= 4
            and all(type(n) is int and n >= 0 for n in shape)
            and type(offset) is int
            and offset >= 0,
            "an array's shape or offset is malformed",
        )
        count = math.prod(shape)
        require(offset + count * dtype.itemsize <= len(self._buffer), "an array runs past the data")
        flat = np.frombuffer(self._buffer, dtype=dtype, count=count, offset=offset)
        return flat.reshape(shape), index

    def value(self, node: Any) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.value(x) for x in node]
        require(isinstance(node, dict), "an unknown value")
        if "$a" in node:
            return self.array(node)
        if "$c" in node:
            return self.instance(node)
        if "$t" in node:
            require(isinstance(node["$t"], list), "a malformed tuple")
            return tuple(self.value(x) for x in node["$t"])
        if "$d" in node:
            require(isinstance(node["$d"], dict), "a malformed dict")
            return {k: self.value(v) for k, v in node["$d"].items()}
        if "$s" in node:
            kind = SCALAR_TYPES.get(node["$s"])
            require(
                kind is not None and isinstance(node.get("v"), (bool, int, float)), "a bad scalar"
            )
            assert kind is not None
            return kind(node["v"])
        if "$o" in node:
            return self.objects(node)
        if "$slice" in node:
            bounds = node["$slice"]
            require(
                isinstance(bounds, list)
                and len(bounds) == 3
                and all(b is None or type(b) is int for b in bounds),
                "a malformed slice",
            )
            return slice(*bounds)
        if "$tree" in node:
            return self.tree(node)
        if "$type" in node:
            kind = SCALAR_TYPES.get(node["$type"])
            require(kind is not None, "an unknown type")
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
        require(cls is not None, f"the class {str(node['$c'])[:60]!r} is not allowed")
        assert cls is not None
        state = node.get("d")
        require(isinstance(state, dict), "an object without attributes")
        assert isinstance(state, dict)
        own_attributes(cls, state)
        obj: Any = object.__new__(cls)
        obj.__dict__.update({name: self.value(v) for name, v in state.items()})
        # The loss is rebuilt once the parameters it is built from are checked (check_fitted).
        require(node.get("loss") in (None, True), "a malformed loss marker")
        require(
            node.get("loss") is None or isinstance(obj, LOSS_OWNERS),
            "a loss on an estimator without one",
        )
        return obj

    def tree(self, node: dict[str, Any]) -> Tree:
        head = node["$tree"]
        require(isinstance(head, list) and len(head) == 3, "a malformed tree")
        n_features, n_classes_ref, n_outputs = head
        n_classes = self.array(n_classes_ref)
        require(
            type(n_features) is int
            and type(n_outputs) is int
            and 1 <= n_outputs == len(n_classes)
            and n_features >= 1
            and n_classes.dtype.kind == "i",
            "a tree's sizes are malformed",
        )
        widest = max(n_classes.tolist())
        nodes, values = self._tree_array(node.get("nodes")), self._tree_array(node.get("values"))
        require(
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
