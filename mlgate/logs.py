"""Process-wide logging, configured once by each entry point (never at import time).

``MLGATE_LOG_LEVEL`` sets the level; ``MLGATE_LOG_FORMAT=json`` writes one JSON object per line
(time, level, logger, message, and the job id and trace id where known). The job id comes from
``job_context``, so a log line inside a job names it without every call passing it along.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

__all__ = ["LOG_FORMATS", "configure_logging", "current_job", "job_context"]

LOG_FORMATS = ("text", "json")
_job: contextvars.ContextVar[str] = contextvars.ContextVar("mlgate_job", default="")


def current_job() -> str:
    return _job.get()


@contextlib.contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Log lines inside name ``job_id``."""
    token = _job.set(job_id)
    try:
        yield
    finally:
        _job.reset(token)


def _trace_id() -> str:
    # Only when tracing is on: opentelemetry is then imported already, and a span may be current.
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return ""
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else ""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job = getattr(record, "job_id", "") or _job.get()
        if job:
            entry["job_id"] = job
        trace_id = _trace_id()
        if trace_id:
            entry["trace_id"] = trace_id
        for key in ("outcome", "attempt", "duration_s", "kind"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(env: Mapping[str, str] | None = None) -> None:
    """Configure the root logger from ``MLGATE_LOG_LEVEL`` and ``MLGATE_LOG_FORMAT``.

    Raises ``ValueError`` naming the variable when one is not understood.
    """
    env = os.environ if env is None else env
    level_name = env.get("MLGATE_LOG_LEVEL", "INFO").upper()
    level = logging.getLevelName(level_name)
    if not isinstance(level, int):
        raise ValueError(
            f"MLGATE_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {level_name!r}"
        )
    form = env.get("MLGATE_LOG_FORMAT", "text").lower()
    if form not in LOG_FORMATS:
        raise ValueError(f"MLGATE_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {form!r}")
    handler = logging.StreamHandler()
    if form == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
