"""A house-price CSV as a new user brings one: numbers, categories, booleans, blanks, quoted commas,
an id and a free-text note; and the scikit-learn pipeline mlgate's imputed model should equal."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from google.protobuf import struct_pb2
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder

from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.v1 import jobs_pb2

__all__ = [
    "CATEGORICAL",
    "FEATURES",
    "NUMERIC",
    "columns_of",
    "house_csv",
    "houses",
    "infer_request",
    "read_back",
    "reference_model",
    "row_structs",
]

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


def reference_model(frame: pd.DataFrame, estimator: Any = None, *, impute: bool = True) -> Pipeline:
    """scikit-learn's own pipeline for ``mlgate train --exclude id,listing_note`` with
    ``--impute median`` (or none): the same split, the encoding mlgate lays out (one-hot columns
    first, then the numbers) with the imputers inside it, the default forest unless
    ``estimator``."""
    X, y = frame[FEATURES], frame["price"]
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.2, random_state=42)
    categorical = [name for name in FEATURES if name in CATEGORICAL]
    one_hot = OneHotEncoder(handle_unknown="ignore")
    encode = ColumnTransformer(
        [
            (
                "categorical",
                make_pipeline(SimpleImputer(strategy="most_frequent"), one_hot)
                if impute
                else one_hot,
                categorical,
            )
        ],
        remainder=SimpleImputer(strategy="median") if impute else "passthrough",
    )
    model = estimator or RandomForestRegressor(max_depth=3, n_estimators=100, random_state=42)
    return Pipeline([("encode", encode), ("estimator", model)]).fit(X_train, y_train)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def row_structs(frame: pd.DataFrame, *, extra: Mapping[str, Any] | None = None) -> list[Any]:
    """Rows as a prediction job sends them: a blank as null, or left out (every other one)."""
    out = []
    blanks = 0
    for row in frame.to_dict("records"):
        values = {}
        for name, value in row.items():
            plain = _plain(value)
            if plain is None:
                blanks += 1
                if blanks % 2:
                    continue
            values[str(name)] = plain
        struct = struct_pb2.Struct()
        struct.update({**values, **(extra or {})})
        out.append(struct)
    return out


def columns_of(frame: pd.DataFrame) -> list[jobs_pb2.FeatureColumn]:
    """Columns as a prediction job sends them: NaN, or an empty string, for a blank."""
    columns = []
    for name in frame.columns:
        column = jobs_pb2.FeatureColumn(name=str(name))
        values = [_plain(v) for v in frame[name].tolist()]
        if name in NUMERIC:
            column.doubles.values.extend(math.nan if v is None else float(v) for v in values)
        elif all(isinstance(v, bool) for v in values):
            column.bools.values.extend(values)
        elif all(isinstance(v, int) for v in values):
            column.int64s.values.extend(values)
        else:
            texts = [
                "" if v is None else str(v).lower() if isinstance(v, bool) else v for v in values
            ]
            column.strings.values.extend(texts)
        columns.append(column)
    return columns


def infer_request(model: str, frame: pd.DataFrame) -> pb.ModelInferRequest:
    """One raw tensor per column: FP64 with NaN, BYTES with empty strings, for blanks."""
    request = pb.ModelInferRequest(model_name=model)
    for column in columns_of(frame):
        kind = column.WhichOneof("values") or "doubles"
        datatype = {"doubles": "FP64", "int64s": "INT64", "bools": "BOOL", "strings": "BYTES"}[kind]
        request.inputs.add(name=column.name, datatype=datatype, shape=[len(frame)])
        if kind == "strings":
            raw = b"".join(
                len(v.encode()).to_bytes(4, "little") + v.encode() for v in column.strings.values
            )
        else:
            dtype = {"doubles": "<f8", "int64s": "<i8", "bools": "|b1"}[kind]
            raw = np.asarray(getattr(column, kind).values, dtype=dtype).tobytes()
        request.raw_input_contents.append(raw)
    return request
