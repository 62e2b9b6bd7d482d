"""Plain Python values (labels, predictions) as protobuf ``Value``s, for records and results."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format, struct_pb2

__all__ = ["values"]


def values(items: Iterable[Any]) -> list[struct_pb2.Value]:
    found = []
    for item in items:
        value = struct_pb2.Value()
        json_format.ParseDict(item, value)
        found.append(value)
    return found
