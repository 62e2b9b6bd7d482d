"""Command-line text to request values: --param, feature lists and prediction rows."""

from __future__ import annotations

import pytest

from mlgate_client._input import (
    UsageError,
    parse_delimiter,
    parse_features,
    parse_param,
    parse_params,
    parse_rows,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max_depth=5", ("max_depth", 5)),
        ("learning_rate=0.1", ("learning_rate", 0.1)),
        ("max_depth=null", ("max_depth", None)),
        ("bootstrap=false", ("bootstrap", False)),
        ("criterion=gini", ("criterion", "gini")),
        ('criterion="5"', ("criterion", "5")),
        ("class_weight=balanced", ("class_weight", "balanced")),
        ("hidden=[10, 20]", ("hidden", [10, 20])),
        ("x=a=b", ("x", "a=b")),
        ("empty=", ("empty", "")),
    ],
)
def test_param_values_are_json_or_else_strings(text, expected) -> None:
    assert parse_param(text) == expected


@pytest.mark.parametrize("text", ["max_depth", "=5", " =5"])
def test_param_without_a_name_is_a_usage_error(text) -> None:
    with pytest.raises(UsageError, match="name=value"):
        parse_param(text)


def test_params_collect_and_refuse_a_name_given_twice() -> None:
    assert parse_params(["a=1", "b=x"]) == {"a": 1, "b": "x"}
    assert parse_params([]) == {}
    with pytest.raises(UsageError, match="a is given twice"):
        parse_params(["a=1", "a=2"])


def test_features_from_commas_and_repeated_flags() -> None:
    assert parse_features(["age,bmi", "bp", " s1 , s2 ,", ""]) == ["age", "bmi", "bp", "s1", "s2"]
    assert parse_features([]) == []


def test_rows_from_a_json_list_an_object_or_json_lines() -> None:
    assert parse_rows('[{"a": 1}, {"a": 2}]', "f") == [{"a": 1}, {"a": 2}]
    assert parse_rows('{"a": 1, "b": "x"}', "f") == [{"a": 1, "b": "x"}]
    assert parse_rows('{"a": 1}\n\n{"a": 2}\n', "f") == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "rows.jsonl has no rows"),
        ("[]", "rows.jsonl has no rows"),
        ("[1, 2]", "rows.jsonl row 1 is not a JSON object"),
        ('{"a": 1}\n\n{"a": 2', "rows.jsonl line 3 is not JSON"),
        ('{"a": 1}\n[1]', "rows.jsonl line 2 is not a JSON object"),
    ],
)
def test_bad_rows_say_where(text, message) -> None:
    with pytest.raises(UsageError, match=message):
        parse_rows(text, "rows.jsonl")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", ""), (",", ","), (";", ";"), ("|", "|"), ("tab", "\t"), ("TAB", "\t"), ("\\t", "\t")],
)
def test_delimiter_names_a_shell_can_type(text, expected) -> None:
    assert parse_delimiter(text) == expected


def test_an_unknown_delimiter_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--delimiter ':' is not one of"):
        parse_delimiter(":")
