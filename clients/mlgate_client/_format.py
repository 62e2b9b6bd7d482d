"""Output for people (aligned tables, key: value blocks, a progress bar) and for machines (JSON)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from mlgate.v1 import jobs_pb2
from mlgate_client._progress import Progress
from mlgate_client.results import (
    Dataset,
    Job,
    Model,
    PredictResult,
    TrainResult,
    stage_name,
    state_name,
    timestamp,
)
from mlgate_client.status import Status

__all__ = [
    "Progress",
    "dataset_block",
    "datasets_table",
    "event_dict",
    "event_line",
    "job_block",
    "jobs_table",
    "jsonable",
    "metrics_text",
    "model_block",
    "models_table",
    "number",
    "param_text",
    "predictions_table",
    "status_block",
    "table",
    "to_json",
    "train_summary",
    "versions_table",
]


def jsonable(value: Any) -> Any:
    """A value ``json.dumps`` accepts: views become dicts (without ``proto``), times ISO 8601.

    A job's id is ``job_id`` in every output (results, events, job records, errors); a job
    record also keeps ``id``, the same value, for scripts written before."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        found = {
            f.name: jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name != "proto"
        }
        if isinstance(value, Job):
            found["job_id"] = value.id
        return found
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def to_json(value: Any) -> str:
    return json.dumps(jsonable(value), sort_keys=True)


def param_text(value: Any) -> str:
    """A hyperparameter as ``--param`` reads it back: JSON (``null``, ``true``, ``3.0``), or a
    bare string where JSON would not read it as something else (``criterion=squared_error``)."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value)


def number(value: float) -> str:
    return f"{value:.6g}"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return number(value)
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if value is None:
        return "-"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces."""
    cells = [list(header), *([_cell(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _block(pairs: Sequence[tuple[str, Any]]) -> str:
    width = max(len(key) for key, _ in pairs)
    return "\n".join(f"{key + ':':<{width + 1}} {_cell(value)}" for key, value in pairs)


def metrics_text(metrics: Mapping[str, float]) -> str:
    return "  ".join(f"{name}={number(value)}" for name, value in sorted(metrics.items()))


def _percent(progress: float) -> str:
    return f"{progress:.0%}"


def train_summary(result: TrainResult) -> str:
    pairs: list[tuple[str, Any]] = [("job", result.job_id), ("model", result.model_id)]
    if result.model_name:
        pairs.append(("version", f"{result.model_name}/{result.model_version}"))
    pairs.append(("metrics", metrics_text(result.metrics)))
    return _block(pairs)


def predictions_table(result: PredictResult) -> str:
    header = ["row", "prediction"]
    if result.probabilities:
        header += [f"p({label})" for label in result.classes]
    rows = []
    for i, prediction in enumerate(result.predictions):
        row: list[Any] = [i, prediction]
        if i < len(result.probabilities):
            row += [f"{p:.3f}" for p in result.probabilities[i]]
        rows.append(row)
    return table(header, rows)


def jobs_table(jobs: Sequence[Job]) -> str:
    rows = [
        [
            job.id,
            job.kind,
            job.state,
            job.stage or "-",
            _percent(job.progress),
            job.create_time,
            job.dataset_id or "-",
            job.model_id or "-",
        ]
        for job in jobs
    ]
    header = ["ID", "KIND", "STATE", "STAGE", "PROGRESS", "CREATED", "DATASET", "MODEL"]
    return table(header, rows)


def job_block(job: Job) -> str:
    pairs: list[tuple[str, Any]] = [
        ("id", job.id),
        ("kind", job.kind),
        ("state", job.state),
    ]
    if job.owner:
        pairs.append(("owner", job.owner))
    if job.parent_job_id:
        pairs.append(("parent", job.parent_job_id))
    if job.stage:
        pairs.append(("stage", job.stage))
    pairs += [("progress", _percent(job.progress)), ("attempt", attempt_text(job))]
    spec = job.proto
    if spec.HasField("train"):
        pairs += [
            ("dataset", spec.train.dataset_id),
            ("target", spec.train.target),
            ("features", ", ".join(spec.train.features) or "(all but the target)"),
            ("estimator", spec.train.estimator or "(default)"),
        ]
    if spec.HasField("predict"):
        pairs.append(("rows", spec.row_count or len(spec.predict.rows)))
    if job.model_id:
        pairs.append(("model", job.model_id))
    if job.metrics:
        pairs.append(("metrics", metrics_text(job.metrics)))
    if job.error_code:
        pairs.append(("error", f"{job.error_code}: {job.error_message}"))
    elif job.message:
        pairs.append(("message", job.message))
    pairs += [("created", job.create_time), ("updated", job.update_time)]
    return _block(pairs)


def attempt_text(job: Job) -> str:
    """ "2 of 3 (the worker running attempt 1 stopped answering)", or as much as is known."""
    text = f"{job.attempt} of {job.max_attempts}" if job.max_attempts else str(job.attempt)
    return f"{text} ({job.retry_reason})" if job.retry_reason else text


def models_table(models: Sequence[Model]) -> str:
    rows = [
        [
            m.id,
            f"{m.name}/{m.version}" if m.name else "-",
            m.task,
            m.estimator or "-",
            m.dataset_id,
            m.target,
            m.create_time,
            metrics_text(m.metrics),
        ]
        for m in models
    ]
    header = ["ID", "VERSION", "TASK", "ESTIMATOR", "DATASET", "TARGET", "CREATED", "METRICS"]
    return table(header, rows)


def versions_table(models: Sequence[Model]) -> str:
    """One name's versions: what each is, which aliases point at it, how it scored."""
    rows = [
        [
            m.version,
            m.id,
            ", ".join(m.aliases) or "-",
            m.estimator or "-",
            m.create_time,
            metrics_text(m.metrics),
        ]
        for m in models
    ]
    return table(["VERSION", "ID", "ALIASES", "ESTIMATOR", "CREATED", "METRICS"], rows)


def model_block(model: Model) -> str:
    pairs: list[tuple[str, Any]] = [("id", model.id)]
    if model.owner:
        pairs.append(("owner", model.owner))
    if model.name:
        pairs.append(("version", f"{model.name}/{model.version}"))
        pairs.append(("aliases", ", ".join(model.aliases) or "-"))
    if model.through_alias is not None:
        pairs.append(("through", model.through_alias.describe()))
    if model.description:
        pairs.append(("description", model.description))
    if model.tags:
        pairs.append(("tags", ", ".join(f"{k}={v}" for k, v in sorted(model.tags.items()))))
    pairs += [
        ("job", model.job_id),
        ("target", model.target),
        ("task", model.task),
        ("features", ", ".join(f"{c.name} ({c.dtype})" for c in model.features)),
    ]
    if model.classes:
        pairs.append(("classes", ", ".join(str(c) for c in model.classes)))
    if not model.sha256:
        # Another owner's model: its card only (docs/security.md).
        pairs.append(("details", f"for {model.owner or 'its owner'} and admin only"))
        return _block([*pairs, ("created", model.create_time)])
    pairs += [
        ("dataset", model.dataset_id),
        ("dataset sha256", model.dataset_sha256 or "-"),
        ("estimator", model.estimator),
        ("params", ", ".join(f"{k}={param_text(v)}" for k, v in sorted(model.params.items()))),
        ("metrics", metrics_text(model.metrics)),
    ]
    if model.feature_importances:
        ranked = sorted(model.feature_importances.items(), key=lambda kv: -kv[1])
        pairs.append(("importances", ", ".join(f"{k}={v:.3f}" for k, v in ranked)))
    if model.impute:
        filled = ", ".join(f"{k}={param_text(v)}" for k, v in model.imputed.items())
        pairs.append(("impute", f"{model.impute}: {filled}"))
    pairs += [("warning", warning) for warning in model.warnings]
    pairs += [
        ("rows", f"{model.train_rows} train, {model.test_rows} test"),
        ("sklearn", model.sklearn_version),
        ("sha256", model.sha256),
        ("size", f"{model.size_bytes} bytes"),
        ("created", model.create_time),
    ]
    return _block(pairs)


def datasets_table(datasets: Sequence[Dataset]) -> str:
    rows = [
        [
            d.id,
            d.rows,
            len(d.columns),
            d.format or "csv",
            "yes" if d.builtin else "no",
            d.size_bytes,
            d.create_time,
        ]
        for d in datasets
    ]
    return table(["ID", "ROWS", "COLUMNS", "FORMAT", "BUILTIN", "BYTES", "CREATED"], rows)


def dataset_block(dataset: Dataset) -> str:
    head = _block(
        [
            ("id", dataset.id),
            *([("owner", dataset.owner)] if dataset.owner else []),
            ("rows", dataset.rows),
            *([("format", dataset.format)] if dataset.format else []),
            ("builtin", "yes" if dataset.builtin else "no"),
            ("size", f"{dataset.size_bytes} bytes"),
            ("sha256", dataset.sha256 or "-"),
            ("created", dataset.create_time),
        ]
    )
    columns = table(["COLUMN", "DTYPE"], [[c.name, c.dtype] for c in dataset.columns])
    return f"{head}\n\n{columns}"


def event_dict(event: jobs_pb2.JobEvent) -> dict[str, Any]:
    """A job event as plain JSON values, enums as short names."""
    out: dict[str, Any] = {
        "job_id": event.job_id,
        "seq": event.seq,
        "state": state_name(event.state),
        "stage": stage_name(event.stage),
        "progress": event.progress,
        "attempt": event.attempt,
        "message": event.message,
        "time": jsonable(timestamp(event.time)),
    }
    if event.HasField("error"):
        out["error"] = {"code": event.error.code, "message": event.error.message}
    if event.HasField("train_result"):
        out["train_result"] = jsonable(TrainResult.from_event(event))
    if event.HasField("predict_result"):
        out["predict_result"] = jsonable(PredictResult.from_event(event))
    return out


def event_line(event: jobs_pb2.JobEvent) -> str:
    """One event on one line: seq, state, stage, progress, and what it says."""
    parts = [f"{event.seq:>3}", f"{state_name(event.state):<9}"]
    parts.append(f"{stage_name(event.stage) or '-':<13}")
    parts.append(f"{_percent(event.progress):>4}")
    if event.HasField("error"):
        parts.append(f"{event.error.code}: {event.error.message}")
    elif event.HasField("train_result"):
        result = event.train_result
        version = f" ({result.model_name}/{result.model_version})" if result.model_name else ""
        parts.append(f"model {result.model_id}{version}  {metrics_text(result.metrics)}")
    elif event.HasField("predict_result"):
        count = len(event.predict_result.predictions)
        parts.append(f"{count} prediction{'s' if count != 1 else ''}")
    elif event.message:
        parts.append(event.message)
    return "  ".join(parts).rstrip()


def status_block(status: Status) -> str:
    """``mlgate status``: one line per dependency, the workers, then the queues."""
    lines = [f"mlgate {status.version}"]
    for d in status.dependencies:
        state = "ok" if d.healthy else f"DOWN: {d.detail}"
        lines.append(f"{d.name + ':':<11} {d.kind:<9} {state}")
    lines.append(f"{'workers:':<11} {status.workers}")
    lines.append("")
    lines.append(
        table(
            ["QUEUE", "WAITING", "CONSUMERS"],
            [(q.name, q.depth, q.consumers) for q in status.queues],
        )
    )
    return "\n".join(lines)
