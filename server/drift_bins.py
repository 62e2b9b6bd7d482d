"""A feature's bins for input drift (``server.drift``): its training reference
(``Model.input_reference``, ``workers.reference``) as the shares per bin, a window of served
values as bin codes, and the population stability index between the two.

A number falls in the decile bin ``bisect_left(edges, value)`` (a value equal to an edge in the
bin below it, as training's ``numpy.searchsorted(side="left")``); a string or boolean in its
category's bin, or "other" for a category the reference does not keep (training never had it,
or had it too rarely to keep), whose reference share is what the kept ones leave. Blanks have a
code of their own and count on neither side.

PSI = sum over bins of (a - e) * ln(a / e), ``a`` the window's share of the rows with a value and
``e`` the reference's, each taken as at least ``EPSILON`` so an empty bin counts (a category
training never had weighs in) without dividing by zero.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from mlgate.v1 import models_pb2

__all__ = ["BLANK", "EPSILON", "NO_DATA", "NO_REFERENCE", "FeatureBins", "level", "psi"]

#: The least share a bin counts with, on either side.
EPSILON = 1e-4
#: The bin code of a blank: no value, or a feature the request left out.
BLANK = 255
#: What a feature's level says without a number: a model trained before references were
#: recorded, or a window with no value of the feature yet.
NO_REFERENCE = "no reference"
NO_DATA = "no data"
# Categories kept in bins of their own (training keeps 100); the codes must stay below BLANK.
_MAX_CATEGORIES = 254
_BOOLEAN_TEXT = ("true", "false")


def psi(expected: Sequence[float], counts: Sequence[int]) -> float:
    """The population stability index of ``counts`` (rows per bin) against ``expected`` (the
    reference's share per bin, in the same order)."""
    total = sum(counts)
    index = 0.0
    for e, n in zip(expected, counts, strict=True):
        a = max(n / total, EPSILON)
        e = max(e, EPSILON)
        index += (a - e) * math.log(a / e)
    return index


def level(index: float) -> str:
    """How a PSI reads: "ok" below 0.1, "moderate" from 0.1, "major" from 0.25."""
    return "ok" if index < 0.1 else "moderate" if index < 0.25 else "major"


class FeatureBins:
    """One feature's reference bins and its window of bin codes (``window`` bytes)."""

    def __init__(self, name: str, reference: models_pb2.FeatureReference, window: int) -> None:
        self.name = name
        self.edges = list(reference.edges)
        self.numeric = bool(self.edges)
        self._bisect = functools.partial(bisect.bisect_left, self.edges)
        self.index: dict[str, int] = {}
        if self.numeric:
            self.expected = list(reference.shares)
        else:
            kept = sorted(reference.frequencies.items(), key=lambda kv: -kv[1])[:_MAX_CATEGORIES]
            self.index = {category: i for i, (category, _share) in enumerate(kept)}
            shares = [share for _category, share in kept]
            self.expected = [*shares, max(0.0, 1.0 - sum(shares))]  # the last: "other"
        self.ring = bytearray([BLANK]) * window

    def codes(self, values: Sequence[Any]) -> bytes:
        """Each value's bin code."""
        if self.numeric:
            return self._numeric_codes(values)
        index, other = self.index, len(self.index)
        found = []
        for v in values:
            if v is None or v == "" or (isinstance(v, float) and v != v):
                found.append(BLANK)
                continue
            text = ("true" if v else "false") if isinstance(v, bool) else str(v)
            code = index.get(text)
            if code is None and text.lower() in _BOOLEAN_TEXT:
                code = index.get(text.lower())  # a boolean sent as text, in any case
            found.append(other if code is None else code)
        return bytes(found)

    def _numeric_codes(self, values: Sequence[Any]) -> bytes:
        try:
            # Numbers without blanks (most requests): bisected by map, no Python step per
            # value; a NaN (a blank) makes the sum NaN, a None raises TypeError.
            if not math.isnan(sum(values)):
                return bytes(map(self._bisect, values))
        except TypeError:
            pass
        return bytes(_number_code(self.edges, v) for v in values)

    def counts(self) -> list[int]:
        """The window's rows per bin (blanks left out)."""
        seen = Counter(self.ring)
        return [seen.get(code, 0) for code in range(len(self.expected))]

    def index_now(self) -> float | None:
        """The window's PSI; None while it holds no value."""
        counts = self.counts()
        return psi(self.expected, counts) if sum(counts) else None


def _number_code(edges: Sequence[float], value: Any) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
        return bisect.bisect_left(edges, value)
    return BLANK
