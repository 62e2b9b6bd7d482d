"""Inputs the tests share: the documented diabetes example and a tiny CSV."""

from __future__ import annotations

DIABETES_FEATURES = ["age", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
# The row the docs predict; the model trained with the docs' command gives about 208.6.
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
IRIS_ROW = {
    "sepal length (cm)": 5.1,
    "sepal width (cm)": 3.5,
    "petal length (cm)": 1.4,
    "petal width (cm)": 0.2,
}
# Twelve rows, a string feature and a numeric target: enough to train and predict.
HOUSES_CSV = "size,colour,price\n" + "".join(
    f"{size},{colour},{size * 3 + (10 if colour == 'red' else 0)}\n"
    for size in range(10, 70, 10)
    for colour in ("red", "blue")
)
# Holds the only training slot for a second or more, so a job queued behind it stays queued.
SLOW_PARAMS = {"n_estimators": 400, "max_depth": 12}
