"""What the client commands do: call MLGateClient, print text or JSON."""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlgate.v1 import jobs_pb2
from mlgate_client._format import (
    Progress,
    dataset_block,
    datasets_table,
    event_dict,
    event_line,
    job_block,
    jobs_table,
    jsonable,
    model_block,
    models_table,
    predictions_table,
    status_block,
    to_json,
    train_summary,
)
from mlgate_client._input import (
    UsageError,
    as_columns,
    parse_delimiter,
    parse_features,
    parse_params,
    parse_rows,
)
from mlgate_client.client import MLGateClient
from mlgate_client.errors import JobCancelled, JobFailed
from mlgate_client.status import waiting_note

__all__ = [
    "cmd_datasets_delete",
    "cmd_datasets_get",
    "cmd_datasets_list",
    "cmd_datasets_upload",
    "cmd_jobs_cancel",
    "cmd_jobs_get",
    "cmd_jobs_list",
    "cmd_jobs_watch",
    "cmd_models_delete",
    "cmd_models_get",
    "cmd_models_list",
    "cmd_predict",
    "cmd_status",
    "cmd_train",
    "err",
    "out",
]


_ENDED = frozenset({"succeeded", "failed", "cancelled"})


def out(text: str) -> None:
    print(text, flush=True)


def err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# Jobs


def cmd_train(args: argparse.Namespace, client: MLGateClient) -> int:
    request: dict[str, Any] = {
        "dataset_id": args.dataset,
        "target": args.target,
        "features": parse_features(args.features or ()),
        "estimator": args.estimator or "",
        "params": parse_params(args.param or ()),
        "task": args.task,
        "test_size": args.test_size,
        "random_seed": args.seed,
        "model_name": args.name or "",
        "timeout_seconds": args.time_limit,
        "impute": args.impute or "",
        "exclude": parse_features(args.exclude or ()),
    }
    if args.detach:
        job_id = client.submit_train(**request)
        out(to_json({"job_id": job_id}) if args.json else job_id)
        return 0
    result = _follow(lambda on_event: client.train(**request, on_event=on_event))
    for warning in result.warnings:
        err(f"warning: {warning}")
    out(to_json(result) if args.json else train_summary(result))
    return 0


def cmd_predict(args: argparse.Namespace, client: MLGateClient) -> int:
    if args.csv is not None:
        return _score(args, client)
    if args.out is not None or args.keep:
        raise UsageError(f"{'--out' if args.out is not None else '--keep'} goes with --csv")
    rows = _read_rows(args)
    sent: list[dict[str, Any]] | dict[str, list[Any]] = as_columns(rows) if args.columns else rows
    result = _follow(
        lambda on_event: client.predict(
            args.model_id, sent, on_event=on_event, routing_key=args.routing_key
        )
    )
    for warning in result.warnings:
        err(f"warning: {warning}")
    if result.alias and not args.json:
        err(f"answered by {result.model_name}/{result.model_version} through @{result.alias}")
    out(to_json(result) if args.json else predictions_table(result))
    return 0


def _score(args: argparse.Namespace, client: MLGateClient) -> int:
    if args.row or args.rows_file is not None or args.stdin is not None:
        raise UsageError("give the rows one way: --csv FILE, --row JSON, --rows-file FILE, or -")
    if args.columns:
        raise UsageError("--columns goes with --row, --rows-file or -; --csv sends arrays already")
    if args.chunk_rows < 1:
        raise UsageError("--chunk-rows must be 1 or more")
    try:
        from mlgate_client._scoring import score_csv  # numpy, loaded only for batch scoring
    except ImportError as exc:
        raise UsageError(
            f"--csv needs numpy and pandas ({exc.name} is missing): "
            "pip install 'mlgate-client[scoring]'"
        ) from None

    keep = parse_features(args.keep or ())
    if args.out is None:
        scored = score_csv(
            client,
            args.model_id,
            args.csv,
            sys.stdout,
            chunk_rows=args.chunk_rows,
            keep=keep,
            routing_key=args.routing_key,
        )
        err(f"scored {scored.rows:,} rows with {scored.answered}")
    else:
        try:
            target = open(args.out, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            raise UsageError(f"cannot write {args.out}: {exc.strerror or exc}") from None
        with target:
            scored = score_csv(
                client,
                args.model_id,
                args.csv,
                target,
                chunk_rows=args.chunk_rows,
                keep=keep,
                routing_key=args.routing_key,
            )
        err(f"wrote {scored.rows:,} predictions of {scored.answered} to {args.out}")
    return 0


def _follow(run: Callable[[Callable[[jobs_pb2.JobEvent], None]], Any]) -> Any:
    """Run a job with a progress bar on a terminal's stderr; on Ctrl-C say how to pick it up."""
    progress = Progress(sys.stderr)
    job_ids: list[str] = []

    def on_event(event: jobs_pb2.JobEvent) -> None:
        if not job_ids:
            job_ids.append(event.job_id)
        progress.update(event)

    try:
        return run(on_event)
    except KeyboardInterrupt:
        progress.clear()
        if job_ids:
            err(f"interrupted; job {job_ids[0]} keeps running: mlgate jobs watch {job_ids[0]}")
        raise
    finally:
        progress.clear()


def _read_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    sources = [bool(args.row), args.rows_file is not None, args.stdin is not None]
    if sum(sources) != 1:
        raise UsageError("give the rows one way: --row JSON (repeatable), --rows-file FILE, or -")
    if args.row:
        return [row for i, text in enumerate(args.row, 1) for row in parse_rows(text, f"--row {i}")]
    if args.stdin is not None or args.rows_file == "-":
        return parse_rows(sys.stdin.read(), "stdin")
    path = Path(args.rows_file)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return parse_rows(text, str(path))


def cmd_jobs_list(args: argparse.Namespace, client: MLGateClient) -> int:
    limit = args.limit if args.limit > 0 else None
    page_size = min(limit or 200, 1000)
    listed = client.list_jobs(args.kind, args.state, page_size, parent=args.parent)
    jobs = list(itertools.islice(listed, limit))
    out(to_json(jobs) if args.json else jobs_table(jobs))
    return 0


def cmd_jobs_get(args: argparse.Namespace, client: MLGateClient) -> int:
    job = client.get_job(args.job_id)
    note = ""
    if job.state == "queued":
        note = waiting_note(client.status(), job.kind)
    if args.json:
        out(to_json({**jsonable(job), "note": note} if note else job))
    else:
        out(job_block(job) + (f"\nnote:     {note}" if note else ""))
    return 0


def cmd_jobs_watch(args: argparse.Namespace, client: MLGateClient) -> int:
    last: jobs_pb2.JobEvent | None = None
    for event in client.watch(args.job_id, args.after_seq):
        out(to_json(event_dict(event)) if args.json else event_line(event))
        last = event
    if last is not None and last.state == jobs_pb2.JOB_STATE_FAILED:
        raise JobFailed(last.error.message, last.error.code or "UNKNOWN", last.job_id)
    if last is not None and last.state == jobs_pb2.JOB_STATE_CANCELLED:
        raise JobCancelled(last.message or "the job was cancelled", last.job_id)
    return 0


def cmd_jobs_cancel(args: argparse.Namespace, client: MLGateClient) -> int:
    # CancelJob answers an ended job with its record, a cancelled one included: only a look
    # first tells "cancelled now" from "had already been cancelled".
    before = client.get_job(args.job_id)
    ended = before.state in _ENDED
    job = before if ended else client.cancel_job(args.job_id)
    if args.json:
        out(to_json(job))
    elif not ended and job.state == "cancelled":
        out(f"{job.id} cancelled")
    else:
        out(f"{job.id} had already ended: {job.state}")
    return 0


def cmd_status(args: argparse.Namespace, client: MLGateClient) -> int:
    status = client.status()
    out(to_json(status) if args.json else status_block(status))
    return 0 if status.healthy else 1


# Models and datasets


def cmd_models_list(args: argparse.Namespace, client: MLGateClient) -> int:
    models = list(client.list_models(name=args.name or ""))
    out(to_json(models) if args.json else models_table(models))
    return 0


def cmd_models_get(args: argparse.Namespace, client: MLGateClient) -> int:
    model = client.get_model(args.model_id)
    out(to_json(model) if args.json else model_block(model))
    return 0


def cmd_models_delete(args: argparse.Namespace, client: MLGateClient) -> int:
    model_id, aliases = client.delete_model(args.model_id, force=args.force)
    if args.json:
        out(to_json({"deleted": model_id, "removed_aliases": aliases}))
    else:
        removed = f"; removed aliases: {', '.join(aliases)}" if aliases else ""
        out(f"{model_id} deleted{removed}")
    return 0


def cmd_datasets_upload(args: argparse.Namespace, client: MLGateClient) -> int:
    path = Path(args.file)
    dataset_id = args.id or path.stem.lower()
    try:
        file = path.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with file:
        dataset = client.upload_dataset(
            dataset_id,
            file,
            replace=args.replace,
            delimiter=parse_delimiter(args.delimiter),
            format=args.format,
        )
    out(to_json(dataset) if args.json else dataset_block(dataset))
    return 0


def cmd_datasets_delete(args: argparse.Namespace, client: MLGateClient) -> int:
    client.delete_dataset(args.dataset_id)
    out(to_json({"deleted": args.dataset_id}) if args.json else f"{args.dataset_id} deleted")
    return 0


def cmd_datasets_list(args: argparse.Namespace, client: MLGateClient) -> int:
    datasets = list(client.list_datasets())
    out(to_json(datasets) if args.json else datasets_table(datasets))
    return 0


def cmd_datasets_get(args: argparse.Namespace, client: MLGateClient) -> int:
    dataset = client.get_dataset(args.dataset_id)
    out(to_json(dataset) if args.json else dataset_block(dataset))
    return 0
