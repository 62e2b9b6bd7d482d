"""Plain Python values (labels, predictions) as protobuf ``Value``s, for records and results."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from google.protobuf import json_format, struct_pb2

__all__ = ["add_values", "plain", "values"]


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON and protobuf understand."""
    return value.item() if isinstance(value, np.generic) else value


def values(items: Iterable[Any]) -> list[struct_pb2.Value]:
    found = []
    for item in items:
        value = struct_pb2.Value()
        json_format.ParseDict(item, value)
        found.append(value)
    return found


def add_values(field: Any, items: Iterable[Any]) -> None:
    """Append plain values (numbers, strings, booleans) to a repeated ``Value`` field: one
    ``add`` each, far cheaper than parsing each as JSON when a result holds thousands."""
    add = field.add
    for item in items:
        if isinstance(item, bool):
            add(bool_value=item)
        elif isinstance(item, int | float):
            add(number_value=item)
        elif isinstance(item, str):
            add(string_value=item)
        else:
            field.extend(values([item]))
