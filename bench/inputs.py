"""What every benchmark sends: the built-in diabetes dataset's features and the docs' example row."""

from __future__ import annotations

__all__ = ["DIABETES_FEATURES", "DOC_ROW"]

DIABETES_FEATURES = ["age", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
# The row the docs predict with.
DOC_ROW = {
    "age": 0.038076,
    "bmi": 0.061696,
    "bp": 0.021872,
    "s1": -0.044223,
    "s2": -0.034821,
    "s3": -0.043401,
    "s4": -0.002592,
    "s5": 0.019908,
    "s6": -0.017646,
}
