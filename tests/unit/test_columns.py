"""The gateway's check of double columns reads each value's top byte: it must agree with the
plain definition (finite, within ±MAX_MAGNITUDE) everywhere, above all at the edges."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from mlgate.columns import check_columns
from mlgate.errors import InvalidField
from mlgate.jobs import MAX_MAGNITUDE
from mlgate.v1 import jobs_pb2, models_pb2

MODEL = models_pb2.Model(features=[models_pb2.Feature(name="x", dtype="numeric")])
EDGES = [
    0.0,
    -0.0,
    5e-324,
    1.0,
    2.0**113,
    -(2.0**113),
    1e35,
    MAX_MAGNITUDE,
    -MAX_MAGNITUDE,
    float(np.nextafter(MAX_MAGNITUDE, math.inf)),
    3.41e38,
    1e39,
    -1e300,
    1.7976931348623157e308,
    math.inf,
    -math.inf,
    math.nan,
]


def _ok(value: float) -> bool:
    return math.isfinite(value) and abs(value) <= MAX_MAGNITUDE


def _columns(values: list[float]) -> list[jobs_pb2.FeatureColumn]:
    column = jobs_pb2.FeatureColumn(name="x")
    column.doubles.values.extend(values)
    return [column]


@pytest.mark.parametrize("value", EDGES)
def test_each_edge_value_is_judged_as_the_definition_judges_it(value: float) -> None:
    values = [1.0, value, -2.5]
    if _ok(value):
        assert check_columns(_columns(values), MODEL) == 3
    else:
        with pytest.raises(InvalidField) as caught:
            check_columns(_columns(values), MODEL)
        assert caught.value.field == "columns[0] ('x')[1]"


def test_random_values_across_every_magnitude_agree_with_the_definition() -> None:
    rng = random.Random(0)
    for _ in range(5_000):
        value = rng.choice(
            [
                rng.uniform(-4e38, 4e38),
                rng.gauss(0.0, 1.0) * 10.0 ** rng.randint(-300, 300),
            ]
        )
        values = [0.5] * rng.randint(0, 3) + [value]
        if _ok(value):
            assert check_columns(_columns(values), MODEL) == len(values)
        else:
            with pytest.raises(InvalidField):
                check_columns(_columns(values), MODEL)
