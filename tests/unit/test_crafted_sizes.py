"""Artifacts crafted to take far more memory than their size: refused before the memory is taken.

Each is loaded in a sandboxed child, as a worker would load it, and the child's peak memory growth
is measured: unchecked, the first case takes over a gigabyte from a 2 MB file.
"""

from __future__ import annotations

import struct
import time

import pytest

from mlgate.errors import ResourceExhausted
from storage.models import ARRAYS, DEFAULT_MAX_MODEL_BYTES, Encoded
from tests.support.artifact_fuzz import PRELOAD, load
from tests.support.artifacts import forest_sharing_one_tree, skops_forest_sharing_one_tree
from tests.support.sandbox import Died, Sandbox
from workers.formats import arrays, decode
from workers.formats.skops_format import check_archive


def test_trees_sharing_one_node_array_are_refused_before_they_are_copied() -> None:
    # 2,000 trees naming one 8,199-node array: each decoded tree would copy its 590 KB.
    artifact, features = forest_sharing_one_tree(2000)
    assert len(artifact) < 4 * 2**20
    started = time.monotonic()
    with Sandbox(PRELOAD) as sandbox:
        outcome = sandbox.run(load, artifact, features, DEFAULT_MAX_MODEL_BYTES, timeout=60)
    elapsed = time.monotonic() - started
    assert not isinstance(outcome, Died), outcome
    (verdict, message), grown_kib = outcome
    assert verdict == "refused"
    assert message.startswith("IntegrityError: ") and "an array backs more than one tree" in message
    assert grown_kib < 64 * 1024
    assert elapsed < 10


def test_a_model_that_would_decode_past_the_limit_is_resource_exhausted_before_it_is() -> None:
    artifact, features = forest_sharing_one_tree(1)
    # The one tree's copy of its arrays is ~590 KB; its document parses well within 300 KB.
    with pytest.raises(ResourceExhausted, match=r"MLGATE_MAX_MODEL_BYTES\); it was not loaded"):
        decode(Encoded(ARRAYS, artifact), "big", features, 300 * 1024)
    decode(Encoded(ARRAYS, artifact), "big", features, 2 * 2**20)


def test_a_document_that_would_parse_past_the_limit_is_refused_unparsed() -> None:
    # Three bytes of JSON per empty list, over 60 bytes per list once parsed.
    document = b'{"root": [' + b"[]," * 1_000_000 + b'[]], "arrays": []}'
    artifact = arrays.MAGIC + struct.pack("<Q", len(document)) + document
    with pytest.raises(arrays.TooLarge):
        arrays.decode(artifact, max_bytes=64 * 2**20)


def test_a_skops_archive_naming_one_array_for_many_trees_is_refused_before_loading() -> None:
    # 800 trees naming the same 590 KB of arrays: about 1 GB once skops and the trees copied them.
    archive = skops_forest_sharing_one_tree(800)
    assert len(archive) < 8 * 2**20
    with pytest.raises(ResourceExhausted, match=r"would take \d+ MiB to load, over this worker"):
        check_archive(archive, "shared", DEFAULT_MAX_MODEL_BYTES)
    check_archive(skops_forest_sharing_one_tree(1), "one", DEFAULT_MAX_MODEL_BYTES)
