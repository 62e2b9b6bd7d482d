"""``MLGateClient.score`` and ``submit_score`` (JobService.Score): a model predicts every row of
a stored dataset on the workers, into a new dataset. ``mlgate score`` prints it
(``_score_command``). No numpy or pandas: the rows never pass through the client."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mlgate.v1 import jobs_pb2
from mlgate_client._streams import EventCallback, EventStreams

__all__ = ["ScoreCalls", "ScoreResult"]


@dataclass(frozen=True)
class ScoreResult:
    """A finished scoring job: the dataset it wrote, its rows, format and columns (the kept
    ones, ``prediction``, and for classifiers ``proba_<class>`` per class), and the model that
    scored (its id, name and version)."""

    job_id: str
    output_dataset_id: str
    rows: int
    format: str
    columns: tuple[str, ...]
    model_id: str
    model_name: str
    model_version: int

    @classmethod
    def from_event(cls, event: jobs_pb2.JobEvent) -> ScoreResult:
        result = event.score_result
        return cls(
            job_id=event.job_id,
            output_dataset_id=result.output_dataset_id,
            rows=result.rows,
            format=result.format,
            columns=tuple(result.columns),
            model_id=result.model_id,
            model_name=result.model_name,
            model_version=result.model_version,
        )


def score_request(
    model: str,
    dataset_id: str,
    output_dataset_id: str,
    keep_columns: Sequence[str] = (),
    format: str = "",
    shard_rows: int = 0,
) -> jobs_pb2.ScoreRequest:
    return jobs_pb2.ScoreRequest(
        model_id=model,
        dataset_id=dataset_id,
        output_dataset_id=output_dataset_id,
        keep_columns=keep_columns,
        format=format,
        shard_rows=shard_rows,
    )


class ScoreCalls(EventStreams):
    """Mixed into MLGateClient, which provides the stub and the timeout."""

    def score(
        self,
        model: str,
        dataset_id: str,
        output_dataset_id: str,
        keep_columns: Sequence[str] = (),
        format: str = "",
        shard_rows: int = 0,
        on_event: EventCallback | None = None,
    ) -> ScoreResult:
        """Predict every row of stored dataset ``dataset_id`` with ``model`` (any reference)
        into the new dataset ``output_dataset_id`` and wait for it; ``on_event`` sees each
        event (RUNNING ones carry ``score_progress``: rows and shards done). ``keep_columns``
        are the input columns copied before the predictions (empty: all); ``format`` is "csv"
        or "parquet" (empty: the input's); ``shard_rows`` the rows per shard (0: the gateway's
        choice). Raises JobFailed or JobCancelled when the job ends that way."""
        request = score_request(
            model, dataset_id, output_dataset_id, keep_columns, format, shard_rows
        )
        final = self._finish(self._events(lambda: self._jobs.Score(request)), on_event)
        return ScoreResult.from_event(final)

    def submit_score(
        self,
        model: str,
        dataset_id: str,
        output_dataset_id: str,
        keep_columns: Sequence[str] = (),
        format: str = "",
        shard_rows: int = 0,
    ) -> str:
        """Queue a scoring job and return its id without waiting; see ``watch``."""
        request = score_request(
            model, dataset_id, output_dataset_id, keep_columns, format, shard_rows
        )
        return self._submitted(lambda: self._jobs.Score(request, timeout=self._timeout), "Score")
