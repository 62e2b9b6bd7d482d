"""Crafted model artifacts: a stored model rewritten as someone with write access could.

Each helper rewrites the artifact and then its manifest's digest, so the sha256 check passes and
only the structure and size checks stand between the artifact and scikit-learn.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio
from sklearn.ensemble import RandomForestRegressor

from storage.models import FORMATS, SKOPS
from workers.formats import arrays
from workers.formats.skops_format import TRUSTED_TYPES

__all__ = [
    "aim_child_outside",
    "artifact_path",
    "forest_sharing_one_tree",
    "inflating_zip",
    "replace_artifact",
    "rewrite_model",
    "set_tree_nodes",
    "skops_forest_sharing_one_tree",
    "with_schema_value",
]


def artifact_path(objects: Path, model_id: str) -> Path:
    """Where the model's artifact is stored, whatever its format."""
    folder = objects / "models" / model_id
    manifest = json.loads((folder / "manifest.json").read_text())
    return folder / f"{manifest['model']['sha256']}.{FORMATS[manifest['format']]}"


def replace_artifact(objects: Path, model_id: str, data: bytes) -> None:
    """Store ``data`` (mlgate's format or skops) as the model's artifact and point its manifest
    at it."""
    folder = objects / "models" / model_id
    manifest_path = folder / "manifest.json"
    artifact_path(objects, model_id).unlink()
    manifest = json.loads(manifest_path.read_text())
    form = arrays.FORMAT if data.startswith(arrays.MAGIC) else SKOPS
    digest = hashlib.sha256(data).hexdigest()
    (folder / f"{digest}.{FORMATS[form]}").write_bytes(data)
    manifest["format"] = form
    manifest["model"]["sha256"] = digest
    manifest["model"]["sizeBytes"] = str(len(data))
    manifest_path.write_text(json.dumps(manifest))


def rewrite_model(objects: Path, model_id: str, mutate: Callable[[Any], None]) -> None:
    """Load the stored estimator, let ``mutate`` change it in place, and store it back in the
    same format."""
    data = artifact_path(objects, model_id).read_bytes()
    if data.startswith(arrays.MAGIC):
        estimator = arrays.decode(data)
        mutate(estimator)
        replace_artifact(objects, model_id, arrays.encode(estimator))
    else:
        estimator = sio.loads(data, trusted=TRUSTED_TYPES)
        mutate(estimator)
        replace_artifact(objects, model_id, sio.dumps(estimator))


def set_tree_nodes(tree: Any, change: Callable[[np.ndarray], None]) -> None:
    """Change a fitted scikit-learn Tree's node array through its own ``__setstate__``."""
    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    change(nodes)
    state["nodes"] = nodes
    tree.__setstate__(state)


def aim_child_outside(estimator: Any) -> None:
    """Point the root's left child far outside the tree: unchecked, predicting reads wild memory."""
    target = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    tree = target.estimators_[0].tree_ if hasattr(target, "estimators_") else target.tree_

    def far(nodes: np.ndarray) -> None:
        nodes["left_child"][0] = 10**9

    set_tree_nodes(tree, far)


def inflating_zip(data: bytes, member: str, size: int) -> bytes:
    """The archive with ``member`` replaced by a .npy array of ``size`` zero bytes, deflated."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            if info.filename == member:
                array = io.BytesIO()
                np.save(array, np.zeros(size // 8, dtype=np.float64), allow_pickle=False)
                target.writestr(member, array.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
            else:
                target.writestr(info, source.read(info))
    return out.getvalue()


def with_schema_value(data: bytes, key: str, value: object) -> bytes:
    """The archive with the first ``key`` of its skops schema set to the JSON ``value``.

    For what the object's own ``__setstate__`` would not let through, such as a Tree whose node
    count disagrees with its arrays.
    """
    source = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(source.read("schema.json"))

    def visit(node: object) -> bool:
        if isinstance(node, dict):
            if key in node and isinstance(node[key], dict) and "content" in node[key]:
                node[key]["content"] = json.dumps(value)
                # skops memoises values by id: a fresh id keeps an equal value elsewhere unchanged.
                node[key]["__id__"] = 1
                return True
            return any(visit(child) for child in node.values())
        if isinstance(node, list):
            return any(visit(child) for child in node)
        return False

    assert visit(schema), f"no {key} in the schema"
    return _with_schema(source, schema)


def _with_schema(source: zipfile.ZipFile, schema: Any) -> bytes:
    """The skops archive ``source`` with ``schema`` as its schema."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            body = (
                json.dumps(schema).encode() if info.filename == "schema.json" else source.read(info)
            )
            target.writestr(info, body)
    return out.getvalue()


def _one_tree_forest(rows: int) -> RandomForestRegressor:
    rng = np.random.default_rng(0)
    X, y = rng.random((rows, 4)), rng.random(rows)
    return RandomForestRegressor(n_estimators=1, bootstrap=False, random_state=0).fit(X, y)


def forest_sharing_one_tree(trees: int, rows: int = 4100) -> tuple[bytes, list[str]]:
    """A forest artifact in mlgate's format whose ``trees`` trees all name one node array (of
    about ``2 * rows`` nodes), and its features: small on disk, each decoded tree a copy."""
    data = arrays.encode(_one_tree_forest(rows))
    head = len(arrays.MAGIC) + 8
    (length,) = struct.unpack("<Q", data[len(arrays.MAGIC) : head])
    document = json.loads(data[head : head + length])
    members = document["root"]["d"]["estimators_"]
    members.extend(copy.deepcopy(members[0]) for _ in range(trees - 1))
    document["root"]["d"]["n_estimators"] = trees
    text = json.dumps(document).encode()
    artifact = arrays.MAGIC + struct.pack("<Q", len(text)) + text + data[head + length :]
    return artifact, [f"x{i}" for i in range(4)]


def skops_forest_sharing_one_tree(trees: int, rows: int = 4100) -> bytes:
    """The same forest as ``forest_sharing_one_tree`` as a skops archive: every tree its own
    object (a fresh ``__id__``, so skops builds each), every one naming the same array files."""
    data = sio.dumps(_one_tree_forest(rows))
    source = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(source.read("schema.json"))
    members = schema["content"]["content"]["estimators_"]["content"]
    fresh = iter(range(1, 10**9))

    def renumber(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: next(fresh) if k == "__id__" else renumber(v) for k, v in node.items()}
        if isinstance(node, list):
            return [renumber(v) for v in node]
        return node

    members.extend(renumber(members[0]) for _ in range(trees - 1))
    return _with_schema(source, schema)
