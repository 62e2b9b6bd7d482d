"""A CSV column's dtype as pandas infers it, decided value by value without pandas.

The gateway describes uploads without pandas (it would hold the whole file in memory, and pandas
costs the gateway tens of megabytes); workers load the data with pandas (``csvfile.read``). A test
holds the two equal on a corpus of awkward files, and ``DatasetCatalog.load`` refuses data that
reads otherwise.
"""

from __future__ import annotations

import re

__all__ = ["ColumnDtype"]

# pandas' default missing-value markers, matched exactly (no stripping), as read_csv does.
_MISSING = frozenset(
    {
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    }
)
_INTEGER = re.compile(r"[+-]?\d+")
_REAL = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|(?i:inf|infinity))")
_BOOLEAN = frozenset({"true", "false"})
_INT64 = (-(2**63), 2**63 - 1)
_UINT64_MAX = 2**64 - 1


class ColumnDtype:
    """What one column's values have been so far: ``see`` each field as the csv module reads it,
    then ``dtype`` is numeric, integer, boolean or string."""

    def __init__(self) -> None:
        self.missing = self.boolean = self.integer = self.real = self.string = False
        self.negative = self.beyond_int64 = self.beyond_uint64 = False

    def see(self, raw: str) -> None:
        if self.string:
            return
        if raw in _MISSING:
            self.missing = True
            return
        value = raw.strip(" \t")
        if raw.lower() in _BOOLEAN:
            self.boolean = True
        elif _INTEGER.fullmatch(value):
            self.integer = True
            number = int(value)
            self.negative |= number < 0
            if not _INT64[0] <= number <= _INT64[1]:
                self.beyond_int64 = True
                self.beyond_uint64 |= not 0 <= number <= _UINT64_MAX
        elif _REAL.fullmatch(value):
            self.real = True
        else:
            self.string = True

    def dtype(self) -> str:
        numbers = self.integer or self.real
        if self.string or (self.boolean and (numbers or self.missing)):
            return "string"
        if self.boolean:
            return "boolean"
        if self.beyond_int64:
            # pandas keeps integers past int64 only as uint64 or, mixed with reals, as floats.
            if self.beyond_uint64 or self.missing or (self.negative and not self.real):
                return "string"
            return "numeric" if self.real else "integer"
        if self.integer and not (self.real or self.missing):
            return "integer"
        return "numeric"  # reals, integers with gaps, or nothing but missing values
