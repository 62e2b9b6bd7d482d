"""The child side of the fit pool (``workers.fitpool``): a long-lived process that fits models.

A child imports scikit-learn once and serves fits one after another over its pipe: it loads the
dataset itself (cached, so a series of jobs on one dataset reads it once), fits and scores, builds
the model's record and encodes its artifact, and sends back only those bytes. Its worker keeps the
broker connection and the events; the child never touches either.

It answers each ``FitTask`` with ``FitProgress`` messages, then one ``FitAnswer``
(``workers.messages``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import select
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from multiprocessing.connection import Connection

import pandas as pd

from mlgate.errors import ResourceExhausted
from mlgate.failures import Backends, public
from mlgate.v1 import jobs_pb2, models_pb2
from storage.base import ObjectStore
from storage.datasets import DatasetCatalog
from storage.errors import StorageUnavailable
from workers import crossval, training
from workers.formats import encode
from workers.importances import feature_importances
from workers.imputation import imputation_record
from workers.messages import (
    FitAnswer,
    FitFailed,
    FitProgress,
    FitTask,
    Fitted,
    StoreAway,
    TrialTask,
)
from workers.paramnames import cache_param_names
from workers.values import values

__all__ = ["exit_with_worker", "serve"]

log = logging.getLogger(__name__)

# Datasets a child keeps loaded between jobs.
_CACHED_DATASETS = 4
# A child reports progress at most this often (stage changes always go).
_PROGRESS_EVERY = 0.25
_PR_SET_PDEATHSIG = 1


class _Datasets:
    """The datasets this child loaded, most recently used last."""

    def __init__(self, catalog: DatasetCatalog) -> None:
        self._catalog = catalog
        self._frames: OrderedDict[tuple[str, str], tuple[pd.DataFrame, str]] = OrderedDict()

    def load(self, dataset_id: str, described_sha256: str) -> tuple[pd.DataFrame, str]:
        key = (dataset_id, described_sha256)
        found = self._frames.get(key)
        if found is None:
            found = self._frames[key] = self._catalog.load_with_digest(dataset_id)
            while len(self._frames) > _CACHED_DATASETS:
                self._frames.popitem(last=False)
        self._frames.move_to_end(key)
        return found


def serve(conn: Connection, store: ObjectStore, backends: Backends) -> None:
    """The child's main loop: run each task the worker sends until its pipe closes; a fit that
    fails is told as the gateway would tell its error (``mlgate.failures``, naming ``backends``)."""
    # Ctrl-C in a terminal reaches the whole process group: the worker decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    exit_with_worker(conn)
    cache_param_names()  # done by the forkserver's warm-up, unless its preload failed
    datasets = _Datasets(DatasetCatalog(store))
    while True:
        try:
            task: FitTask | TrialTask = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(_run(task, datasets, conn, backends))


def _run(
    task: FitTask | TrialTask, datasets: _Datasets, conn: Connection, backends: Backends
) -> FitAnswer:
    last = [0.0, -1.0]  # when the last progress went, and its stage

    def progress(stage: int, fraction: float) -> None:
        now = time.monotonic()
        if stage != last[1] or now - last[0] >= _PROGRESS_EVERY:
            last[0], last[1] = now, stage
            conn.send(FitProgress(stage, fraction))

    try:
        with _memory_limit(task.memory_limit):
            progress(jobs_pb2.STAGE_LOADING_DATA, 0.05)
            load_started = time.time_ns()
            frame, dataset_sha256 = datasets.load(task.plan.dataset_id, task.dataset_sha256)
            loaded = (load_started, time.time_ns())
            if isinstance(task, TrialTask):  # a search's candidate
                return crossval.score(frame, task, progress)
            trained = training.fit(frame, task.plan, progress, cores=task.cores)
            record = _record(task, trained, dataset_sha256)
            encoded = encode(trained.estimator)
    except StorageUnavailable as exc:
        return StoreAway(str(exc))  # an outage: the worker waits it out, as for its own
    except Exception as exc:
        if isinstance(exc, MemoryError):
            exc = ResourceExhausted(_memory_message(task.memory_limit))
        failure = public(exc, backends, f"job {task.job_id}")
        return FitFailed(failure.code, failure.message)
    return Fitted(record.SerializeToString(), encoded, trained.fit_seconds, loaded)


def _memory_message(limit: int) -> str:
    return (
        f"the fit needed more memory than its limit of {limit / 2**20:.0f} MiB "
        "(MLGATE_TRAIN_MEMORY_LIMIT); train a smaller model (fewer or shallower trees, fewer "
        "rows) or raise the limit"
    )


def _record(task: FitTask, trained: training.Trained, dataset_sha256: str) -> models_pb2.Model:
    checked = task.plan
    record = models_pb2.Model(
        id=task.model_id,
        job_id=task.job_id,
        dataset_id=checked.dataset_id,
        dataset_sha256=dataset_sha256,
        target=checked.target,
        task=jobs_pb2.TASK_REGRESSION
        if trained.task == "regression"
        else jobs_pb2.TASK_CLASSIFICATION,
        estimator=checked.estimator,
        metrics=trained.metrics,
        train_rows=trained.train_rows,
        test_rows=trained.test_rows,
    )
    record.create_time.GetCurrentTime()
    for name in checked.features:
        record.features.add(name=name, dtype=checked.dtypes[name])
    record.params.update(trained.params)
    record.classes.extend(values(trained.classes))
    record.feature_importances.update(feature_importances(trained.estimator, checked.features))
    if checked.impute is not None:
        record.imputation.CopyFrom(imputation_record(checked.impute, trained.imputed))
    record.warnings.extend(trained.warnings)
    for name, described in trained.reference.items():
        record.input_reference[name].CopyFrom(described)
    return record


@contextlib.contextmanager
def _memory_limit(limit: int) -> Iterator[None]:
    """Bound the address space to what the child maps now plus ``limit``: an allocation past it
    raises MemoryError in the fit instead of waking the kernel's OOM killer."""
    if limit <= 0:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    bound = _mapped_bytes() + limit
    if hard != resource.RLIM_INFINITY:
        bound = min(bound, hard)
    resource.setrlimit(resource.RLIMIT_AS, (bound, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _mapped_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[0])
    return pages * resource.getpagesize()


def exit_with_worker(conn: Connection) -> None:
    """End this process as soon as the worker's end of ``conn`` closes, even mid-fit.

    A SIGKILLed worker (the OOM killer, a lost node) cannot stop its fits, and its fit processes'
    parent is the forkserver, which lives on as long as any of them does (each holds the fd the
    forkserver watches for its worker's end), so neither it nor ``_die_with_parent`` stops them.
    Without this, a fit would run on for as long as it reports nothing (a model's fit, a large
    load), with no one left to enforce its time limit, taking the cores that the job's next
    attempt needs. POLLRDHUP waits for the peer's close only: a task arriving does not wake it."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLRDHUP)

    def watch() -> None:
        while True:
            with contextlib.suppress(InterruptedError):
                if poller.poll():
                    os._exit(1)

    threading.Thread(target=watch, name="worker-watch", daemon=True).start()


def _die_with_parent() -> None:
    """Linux: the child is killed when the process that forked it exits, so a fit never outlives
    its worker."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
