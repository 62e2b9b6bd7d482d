"""SHARD jobs, the workers' side of batch scoring (``JobService.Score``; the gateway's plan is
``server.scoring``).

A shard predicts rows ``[start_row, end_row)`` of the stored dataset with the model, as the
holdout of a training job is predicted (``workers.evaluation.evaluate_frame`` on the rows as the
dataset catalog reads them for training, blanks filled for an imputed model), and writes one
part (``storage.dataset_parts``): the kept columns, ``prediction``, and one ``proba_<class>``
column per class for a classifier, in input row order. Writing a part again replaces it, so a
shard rerun after its worker died costs that shard only. The commit shard joins the parts in
shard order into the output dataset, registered as an upload is, so it appears whole or not at
all; a commit rerun after its dataset was registered reports it rather than failing.

Shards run on the predict queue, in the worker process, not in a fit process: the model comes
from the worker's model cache (loaded once per worker, not once per shard), and the catalog's
reader keeps the dataset read (``DatasetCatalog.read_rows``: CSV parsed once per worker, Parquet
row groups read as needed), so a shard costs its rows' prediction and its part's write. What a
fit process would add, a hard stop, matters little here: cancellation is looked at between
batches of ``BATCH_ROWS`` rows, so a cancelled shard stops within one batch's prediction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from mlgate.blanks import blank_refused, fill_values, takes_blanks
from mlgate.errors import FailedPrecondition, InvalidField
from mlgate.scoring import PREDICTION, proba_column
from mlgate.v1 import jobs_pb2, models_pb2
from storage.csvfile import Parsed
from storage.dataset_parts import DatasetParts
from storage.datasets import DatasetCatalog
from workers.cache import ModelCache
from workers.evaluation import evaluate_frame
from workers.imputation import fill_frame
from workers.running import Cancelled, Recent
from workers.values import plain

__all__ = ["BATCH_ROWS", "ShardRunner"]

log = logging.getLogger(__name__)

#: Rows predicted at a time: cancellation is looked at between batches.
BATCH_ROWS = 20_000


class ShardRunner:
    """Runs SHARD jobs: ``run`` returns the fields of the SUCCEEDED event."""

    def __init__(self, catalog: DatasetCatalog, cache: ModelCache, cancelled: Recent) -> None:
        self._catalog = catalog
        self._cache = cache
        #: The worker's: jobs whose cancellation it has heard of.
        self._cancelled = cancelled

    def run(self, job: jobs_pb2.Job) -> dict[str, Any]:
        """One attempt at ``job``: the fields of its SUCCEEDED event. Raises Cancelled if it is
        cancelled while it runs."""

        def check() -> None:
            if job.id in self._cancelled:
                raise Cancelled(job.id)
            if job.parent_job_id in self._cancelled:
                # Its own cancel may not be recorded yet, or ever (a shard created as the job
                # was cancelled): it fails, so its record ends and the parts are removed.
                raise FailedPrecondition(
                    f"its scoring job {job.parent_job_id} was cancelled; nothing was written"
                )

        if job.shard.commit:
            return {"shard_result": self._commit(job, check)}
        return {"shard_result": self._score(job, check)}

    def discard(self, job: jobs_pb2.Job) -> None:
        """Remove the parts of ``job``'s scoring job: a shard failed or was cancelled, so the
        job ends without output."""
        try:
            try:
                self._parts(job).discard()
            except OSError:
                self._parts(job).discard()  # once more: another shard was removing them too
        except Exception as exc:
            log.warning(
                "job %s: the parts of job %s were not removed: %s", job.id, job.parent_job_id, exc
            )

    def _parts(self, job: jobs_pb2.Job) -> DatasetParts:
        request = job.shard.score
        return self._catalog.parts(request.output_dataset_id, job.parent_job_id, request.format)

    def _score(self, job: jobs_pb2.Job, check: Callable[[], None]) -> jobs_pb2.ShardResult:
        spec = job.shard
        request = spec.score
        record, model = self._cache.get(request.model_id)
        rows = self._catalog.read_rows(
            request.dataset_id, spec.start_row, spec.end_row, request.dataset_sha256
        )
        if len(rows) != spec.end_row - spec.start_row:
            raise FailedPrecondition(
                f"dataset {request.dataset_id!r} has fewer rows than when the scoring job was "
                "planned: it was replaced meanwhile; score it again"
            )
        predicted, proba = self._predict(model, record, rows, spec.start_row, check)
        kept = list(request.keep_columns) or [str(name) for name in rows.columns]
        out = rows[kept].copy()
        out[PREDICTION] = predicted
        if proba is not None:
            for c, label in enumerate(getattr(model, "classes_", [])):
                out[proba_column(plain(label))] = proba[:, c]
        check()
        described = self._parts(job).write_described(spec.index, out)
        # Cancelled while it was written (another shard may have removed the parts already):
        # this part goes too, with the job's others.
        check()
        return jobs_pb2.ShardResult(
            rows=len(rows),
            columns=[name for name, _ in described],
            dtypes=[dtype for _, dtype in described],
        )

    def _predict(
        self,
        model: Any,
        record: models_pb2.Model,
        rows: pd.DataFrame,
        first_row: int,
        check: Callable[[], None],
    ) -> tuple[np.ndarray, np.ndarray | None]:
        names = [f.name for f in record.features]
        missing = [name for name in names if name not in rows.columns]
        if missing:
            raise InvalidField(
                "dataset_id", f"the dataset has no column {missing[0]!r}, a feature of the model"
            )
        features = rows[names]
        learned = fill_values(record)
        if not takes_blanks(record):
            _refuse_blanks(features, record, first_row)
        predicted: list[np.ndarray] = []
        probas: list[np.ndarray] = []
        for begin in range(0, len(features), BATCH_ROWS):
            check()
            batch = features.iloc[begin : begin + BATCH_ROWS]
            if learned:
                batch = fill_frame(batch, learned)
            p, q = evaluate_frame(model, batch)
            predicted.append(np.asarray(p))
            if q is not None:
                probas.append(np.asarray(q))
        if not predicted:
            return np.empty(0), None
        return np.concatenate(predicted), np.concatenate(probas) if probas else None

    def _commit(self, job: jobs_pb2.Job, check: Callable[[], None]) -> jobs_pb2.ShardResult:
        parts = self._parts(job)
        check()
        if parts.committed():
            # An earlier attempt committed and died before its outcome was recorded.
            dataset = self._catalog.describe(parts.dataset_id)
        else:
            spec = job.shard
            known = None
            if spec.dtypes:  # the shards read their parts back: no scan of the whole file
                columns = list(zip(spec.columns, spec.dtypes, strict=True))
                known = Parsed(columns=columns, rows=int(spec.end_row), delimiter=",")
            dataset = parts.commit(spec.shards, owner=job.owner, described=known)
        return jobs_pb2.ShardResult(rows=dataset.rows, columns=[c.name for c in dataset.columns])


def _refuse_blanks(features: pd.DataFrame, record: models_pb2.Model, first_row: int) -> None:
    for name in features.columns:
        blank = features[name].isna().to_numpy()
        if features[name].dtype == object:
            blank |= (features[name] == "").to_numpy()
        if blank.any():
            row = first_row + int(np.argmax(blank)) + 1
            raise blank_refused("dataset_id", record, f"column {name!r} is blank in row {row}")
