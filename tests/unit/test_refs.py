"""Model references, names and aliases: what parses to what, and what is refused with which field."""

from __future__ import annotations

import pytest

from mlgate.errors import InvalidField
from mlgate.refs import (
    ModelRef,
    check_alias,
    check_model_name,
    check_version,
    parse_ref,
    ref_from_parts,
)

MODEL_ID = "mdl_" + "ab" * 16


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        (MODEL_ID, ModelRef(model_id=MODEL_ID)),
        ("diabetes-rf", ModelRef(name="diabetes-rf")),
        ("diabetes-rf/3", ModelRef(name="diabetes-rf", version=3)),
        ("diabetes-rf@production", ModelRef(name="diabetes-rf", alias="production")),
        ("v1.2_x/12", ModelRef(name="v1.2_x", version=12)),
        ("7day@p-1.0", ModelRef(name="7day", alias="p-1.0")),
    ],
)
def test_references_parse_and_print_back(text: str, ref: ModelRef) -> None:
    assert parse_ref(text) == ref
    assert str(ref) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "is required"),
        ("mdl_123", "not a valid id"),
        ("Diabetes", "not a model reference"),
        ("rf/0", "1 or more"),
        ("rf/01", "1 or more"),
        ("rf/", "1 or more"),
        ("rf/3/4", "1 or more"),
        ("rf/latest", "1 or more"),
        ("rf@", "alias after '@'"),
        ("rf@Prod", "alias after '@'"),
        ("rf@3", "alias after '@'"),
        ("@production", "not a model reference"),
        ("../etc/passwd", "not a model reference"),
        ("a" * 65, "not a model reference"),
        ("rf@prod/1", "not a model reference"),
    ],
)
def test_malformed_references_name_the_field(text: str, why: str) -> None:
    with pytest.raises(InvalidField, match=why) as excinfo:
        parse_ref(text, "model_id")
    assert excinfo.value.field == "model_id"
    assert excinfo.value.code == "INVALID_ARGUMENT"


def test_names_aliases_and_versions_are_checked() -> None:
    assert check_model_name("a" * 64) == "a" * 64
    for bad in ("", "a" * 65, "-x", ".x", "x y", "X", "x/y", "x@y"):
        with pytest.raises(InvalidField, match="model_name"):
            check_model_name(bad)
    with pytest.raises(InvalidField, match="model ids"):
        check_model_name("mdl_forest")
    assert check_alias("production") == "production"
    for bad in ("", "1st", "Prod", "a" * 65, "a b"):
        with pytest.raises(InvalidField, match="alias"):
            check_alias(bad)
    with pytest.raises(InvalidField, match="version"):
        check_version(0)
    assert check_version(3) == 3


def test_inference_protocol_parts_make_a_reference() -> None:
    assert ref_from_parts("rf", "") == ModelRef(name="rf")
    assert ref_from_parts("rf", "2") == ModelRef(name="rf", version=2)
    assert ref_from_parts("rf", "production") == ModelRef(name="rf", alias="production")
    assert ref_from_parts(MODEL_ID, "") == ModelRef(model_id=MODEL_ID)
    with pytest.raises(InvalidField, match="model_version"):
        ref_from_parts(MODEL_ID, "2")
    with pytest.raises(InvalidField, match="model_version"):
        ref_from_parts("rf", "0")
