"""A house-price CSV as a new user brings one: numbers, categories, booleans, blanks, quoted commas,
an id and a free-text note; and the scikit-learn pipeline mlgate's imputed model should equal."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder

__all__ = ["FEATURES", "NUMERIC", "CATEGORICAL", "house_csv", "houses", "reference_forest"]

NUMERIC = ["sqft", "rooms", "year"]
CATEGORICAL = ["district", "garage"]
#: The features once id and listing_note are excluded, in the file's order.
FEATURES = ["sqft", "rooms", "district", "garage", "year"]


def houses(rows: int = 600, seed: int = 7) -> pd.DataFrame:
    """The data as written to the file (blanks as NaN)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "id": np.arange(rows) + 10_000,
            "sqft": rng.normal(1500, 400, rows).round(1),
            "rooms": rng.integers(1, 7, rows),
            "district": rng.choice(["north", "south", "old town, east"], rows),
            "garage": rng.choice(["true", "false"], rows),
            "year": rng.integers(1900, 2020, rows),
            "listing_note": [f"listing {i}, see photos" for i in range(rows)],
        }
    )
    frame["price"] = (
        frame["sqft"] * 120
        + frame["rooms"] * 8_000
        + (frame["district"] == "north") * 30_000
        + rng.normal(0, 5_000, rows)
    ).round(2)
    sqft = frame["sqft"].astype(float)
    sqft[rng.random(rows) < 0.1] = np.nan
    frame["sqft"] = sqft
    district = frame["district"].astype(object)
    district[rng.random(rows) < 0.08] = np.nan
    frame["district"] = district
    return frame


def house_csv(path: Path, frame: pd.DataFrame | None = None) -> Path:
    (frame if frame is not None else houses()).to_csv(path, index=False)
    return path


def read_back(path: Path) -> pd.DataFrame:
    """The file as the workers read it (storage.csvfile.read)."""
    from storage import csvfile

    with path.open("rb") as handle:
        return csvfile.read(io.BytesIO(handle.read()), ",")


def reference_forest(frame: pd.DataFrame) -> Pipeline:
    """scikit-learn's own pipeline for ``mlgate train --impute median --exclude
    id,listing_note``: the same split, the imputers inside the encoding mlgate lays out (one-hot
    columns first, then the numbers), the default forest."""
    X, y = frame[FEATURES], frame["price"]
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.2, random_state=42)
    categorical = [name for name in FEATURES if name in CATEGORICAL]
    encode = ColumnTransformer(
        [
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
                ),
                categorical,
            )
        ],
        remainder=SimpleImputer(strategy="median"),
    )
    forest = RandomForestRegressor(max_depth=3, n_estimators=100, random_state=42)
    return Pipeline([("encode", encode), ("estimator", forest)]).fit(X_train, y_train)
