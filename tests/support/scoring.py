"""Batch scoring in tests: a large diabetes-like dataset with an id column, what scikit-learn
itself predicts for it with a stored model, and a scoring job's output read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlgate_client import MLGateClient
from storage.local import LocalObjectStore
from storage.models import ModelRepository
from tests.support.samples import DIABETES_FEATURES
from workers.formats import load

__all__ = ["diabetes_rows", "read_dataset", "sklearn_model"]


def diabetes_rows(count: int, seed: int = 7) -> pd.DataFrame:
    """``count`` rows shaped like scikit-learn's diabetes (its features, drawn around its rows
    with noise) and an ``id`` column, the row's number."""
    from sklearn.datasets import load_diabetes

    base = load_diabetes(as_frame=True).frame
    rng = np.random.default_rng(seed)
    picked = base.iloc[rng.integers(0, len(base), count)][DIABETES_FEATURES].to_numpy()
    noisy = picked + rng.normal(0, 0.01, picked.shape)
    frame = pd.DataFrame(noisy, columns=DIABETES_FEATURES)
    frame.insert(0, "id", np.arange(count))
    return frame


def sklearn_model(data_dir: Path, model_id: str) -> tuple[Any, list[str]]:
    """The stored model's estimator, loaded from the system's local storage as a worker loads
    it, and its features: what scikit-learn predicts with it is the reference."""
    record, estimator = load(ModelRepository(LocalObjectStore(data_dir / "storage")), model_id)
    return estimator, [f.name for f in record.features]


def read_dataset(client: MLGateClient, dataset_id: str, folder: Path) -> pd.DataFrame:
    """A stored dataset, downloaded and read in its format."""
    path = folder / f"{dataset_id}.download"
    dataset = client.download_dataset(dataset_id, path)
    if dataset.format == "parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)
