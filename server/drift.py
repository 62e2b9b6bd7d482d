"""Input drift: how the inputs this gateway served a model version lately compare with the
model's training data (``Model.input_reference``, recorded by ``workers.reference``).

Per model version the gateway keeps a window of the last ``MLGATE_DRIFT_WINDOW`` input rows (0
turns tracking off), each feature's value held as its bin (``server.drift_bins``). The population
stability index per feature is computed when asked: by ``GetModelDrift`` (``drift_response``) and
when Prometheus scrapes ``mlgate_feature_drift_psi{name,version,feature}``.

Off the request's path: a serving path's hook (``offer_infer``, ``offer_predict``) decides how
many of the request's rows to take and hands the already-decoded request to a bounded queue, then
returns; the drift thread reads and bins those rows (``server.drift_inputs``). Every row is taken
up to ``RATE`` rows a second per version (a token bucket holding one second's worth); above it a
request gives as many rows as the bucket still holds, evenly spaced through it (every k-th row),
and one that finds the bucket empty gives none. ``rows_seen`` counts every row served either way.
A request that finds the queue full (``MAX_QUEUED`` requests, or ``MAX_QUEUED_BYTES`` of them)
is dropped and counted in ``mlgate_drift_dropped_total``.

Memory is bounded: a window costs a byte per feature per row; at most ``MAX_VERSIONS`` versions
are tracked (the one fed least recently goes first), and DeleteModel forgets its version on the
gateway that answered it. A model without a name is tracked for ``GetModelDrift`` by id but has
no metric series: ids are unbounded, so they are never labels.

The gateway's servicers share one tracker through their model catalog (``attach_drift``,
``drift_of``): the inference servicer makes it from the gateway's settings.

No numpy: the gateway stays lean (``tests/unit/test_lean_gateway.py``); bisect and bytearrays do.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.v1 import jobs_pb2, models_pb2
from server.drift_bins import BLANK, NO_DATA, NO_REFERENCE, FeatureBins, level
from server.drift_inputs import Rows, Values, infer_values, predict_values
from server.model_catalog import ModelCatalog

__all__ = [
    "MAX_QUEUED",
    "MAX_QUEUED_BYTES",
    "MAX_VERSIONS",
    "RATE",
    "DriftTracker",
    "attach_drift",
    "drift_of",
    "drift_response",
]

log = logging.getLogger(__name__)

#: Rows a second per version taken into its window before sampling.
RATE = 10_000
#: Model versions tracked at once.
MAX_VERSIONS = 256
#: Requests, and their bytes, waiting for the drift thread before more are dropped.
MAX_QUEUED = 1024
MAX_QUEUED_BYTES = 64 * 2**20

_Read = Callable[[Sequence[str], range], Values | Rows]
# Seconds the drift thread gathers requests before binning them together.
_GATHER = 0.02


class _Version:
    """A model version's window and its token bucket."""

    def __init__(self, record: models_pb2.Model, name: str, number: int, window: int) -> None:
        self.model_id = record.id
        self.name, self.number = name, number
        self.feature_names = [f.name for f in record.features]
        self.features = [
            FeatureBins(f.name, record.input_reference[f.name], window)
            for f in record.features
            if f.name in record.input_reference
        ]
        self.window = window
        self.pos = self.filled = self.rows_seen = 0
        self.tokens = float(RATE)
        self.refilled = self.fed = time.monotonic()

    def take(self, rows: int, now: float) -> range | None:
        """The rows of a request of ``rows`` to bin: all, every k-th, or none."""
        self.rows_seen += rows
        self.fed = now
        self.tokens = min(float(RATE), self.tokens + (now - self.refilled) * RATE)
        self.refilled = now
        if self.tokens < 1 or not self.features:
            return None
        picked = range(0, rows, -(-rows // min(rows, int(self.tokens))))
        self.tokens -= len(picked)
        return picked

    def add(self, values: Mapping[str, Sequence[Any]], rows: int) -> None:
        """Write ``rows`` rows' codes over the oldest in the window."""
        window = self.window
        skip = max(0, rows - window)  # more rows than the window holds: the last ones count
        n = rows - skip
        first = min(n, window - self.pos)
        for feature in self.features:
            sent = values.get(feature.name)
            codes = feature.codes(sent[skip:]) if sent is not None else bytes([BLANK]) * n
            feature.ring[self.pos : self.pos + first] = codes[:first]
            feature.ring[: n - first] = codes[first:]
        self.pos = (self.pos + n) % window
        self.filled = min(window, self.filled + n)


_Queued = tuple[_Version, Callable[[], Values | Rows], int, int]


class _Merged:
    """A version's rows from the requests of one pass, joined: ``Rows`` blocks end to end,
    per-feature values feature by feature."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = names
        self.flat: list[Any] = []
        self.by_feature: dict[str, list[Any]] = {name: [] for name in names}
        self.flat_rows = self.feature_rows = 0

    def join(self, values: Values | Rows, rows: int) -> None:
        if isinstance(values, Rows):
            if len(values.flat) == rows * len(self.names):
                self.flat.extend(values.flat)
                self.flat_rows += rows
            return
        for name in self.names:
            sent = values.get(name, ())
            if len(sent) != rows:  # left out (blank), or not as many as it said
                sent = [*sent[:rows], *[None] * (rows - len(sent))]
            self.by_feature[name].extend(sent)
        self.feature_rows += rows

    def columns(self) -> tuple[dict[str, list[Any]], int]:
        width = len(self.names)
        for j, name in enumerate(self.names):
            self.by_feature[name].extend(self.flat[j::width])
        return self.by_feature, self.feature_rows + self.flat_rows


class DriftTracker(Collector):
    """Every tracked version's window: fed by the serving paths' hooks, read by
    ``GetModelDrift`` and the metrics endpoint (as a Prometheus collector)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.dropped = 0
        self._versions: dict[str, _Version] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Queued | None] = queue.Queue(MAX_QUEUED)
        self._queued_bytes = 0
        self._thread: threading.Thread | None = None
        if window > 0:
            self._thread = threading.Thread(target=self._run, name="mlgate-drift", daemon=True)
            self._thread.start()
            _register(self)

    # --- the serving paths' hooks: a few steps, then return ---

    def offer_infer(
        self,
        record: models_pb2.Model,
        label: tuple[str, int],
        request: pb.ModelInferRequest,
        rows: int,
        size: int,
    ) -> None:
        """A checked ModelInfer request of ``rows`` rows and ``size`` bytes for ``record``,
        which is version ``label`` (name, number; "" and 0 for none)."""
        self._offer(
            record, label, rows, lambda: size, lambda names, r: infer_values(request, names, r)
        )

    def offer_predict(
        self,
        record: models_pb2.Model,
        label: tuple[str, int],
        request: jobs_pb2.PredictRequest,
        rows_read: Sequence[Mapping[str, Any]],
        rows: int,
    ) -> None:
        """A checked Predict request of ``rows`` rows (``rows_read``: its rows as read)."""
        self._offer(
            record,
            label,
            rows,
            request.ByteSize,
            lambda names, r: predict_values(request, rows_read, names, r),
        )

    def _offer(
        self,
        record: models_pb2.Model,
        label: tuple[str, int],
        rows: int,
        size_of: Callable[[], int],
        read: _Read,
    ) -> None:
        if self.window <= 0:
            return
        version = self._versions.get(record.id) or self._track(record, label)
        picked = version.take(rows, time.monotonic())
        if picked is None:
            return
        size = size_of()  # only for a request taken: a Predict's is counted, not known
        with self._lock:
            if self._queue.full() or (
                self._queued_bytes and self._queued_bytes + size > MAX_QUEUED_BYTES
            ):
                self.dropped += 1
                return
            self._queued_bytes += size
        names = version.feature_names
        self._queue.put_nowait((version, lambda: read(names, picked), len(picked), size))

    def _track(self, record: models_pb2.Model, label: tuple[str, int]) -> _Version:
        version = _Version(record, *label, self.window)
        with self._lock:
            if len(self._versions) >= MAX_VERSIONS:
                stale = min(self._versions.values(), key=lambda v: v.fed)
                del self._versions[stale.model_id]
            self._versions[record.id] = version
        return version

    def forget(self, model_id: str) -> None:
        """Stop tracking a model (deleted): its window and its metric series go."""
        with self._lock:
            self._versions.pop(model_id, None)

    # --- the drift thread ---

    def _run(self) -> None:
        running = True
        while running:
            batch = [self._queue.get()]
            # What arrives meanwhile is binned in the same pass: a feature's values from many
            # requests are binned at once, and the thread wakes less often.
            time.sleep(_GATHER)
            while len(batch) < MAX_QUEUED:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            running = None not in batch
            self._bin([item for item in batch if item is not None])
            for _ in batch:
                self._queue.task_done()

    def _bin(self, batch: list[_Queued]) -> None:
        merged: dict[_Version, _Merged] = {}
        for version, read, rows, _size in batch:
            try:
                values = read()
                merged.setdefault(version, _Merged(version.feature_names)).join(values, rows)
            except Exception:  # one odd request must not stop drift tracking
                log.warning("drift: a request's inputs could not be read", exc_info=True)
        with self._lock:
            self._queued_bytes -= sum(size for *_item, size in batch)
            for version, joined in merged.items():
                version.add(*joined.columns())

    def settled(self) -> bool:
        """Whether every request handed over has been binned (tests, the bench)."""
        return self._queue.unfinished_tasks == 0

    def close(self) -> None:
        if self._thread is not None:
            _unregister(self)
            self._queue.put(None)
            self._thread.join(5.0)
            self._thread = None

    # --- reading ---

    def report(
        self, record: models_pb2.Model, name: str, number: int
    ) -> models_pb2.GetModelDriftResponse:
        """``GetModelDrift``'s answer for ``record``, version ``number`` of ``name``."""
        answer = models_pb2.GetModelDriftResponse(
            model_id=record.id,
            name=name,
            version=number,
            has_reference=bool(record.input_reference),
        )
        with self._lock:
            version = self._versions.get(record.id)
            indexes = {}
            if version is not None:
                answer.window_rows, answer.rows_seen = version.filled, version.rows_seen
                indexes = {f.name: f.index_now() for f in version.features}
        for feature in record.features:
            index = indexes.get(feature.name)
            if feature.name not in record.input_reference:
                answer.features.add(feature=feature.name, level=NO_REFERENCE)
            elif index is None:
                answer.features.add(feature=feature.name, level=NO_DATA)
            else:
                answer.features.add(feature=feature.name, psi=index, level=level(index))
        return answer

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            "mlgate_feature_drift_psi",
            "Population stability index of a feature's inputs in the gateway's window of a "
            "model version's last rows, against the version's training part.",
            labels=["name", "version", "feature"],
        )
        dropped = CounterMetricFamily(
            "mlgate_drift_dropped",
            "Requests whose inputs drift tracking dropped because its queue was full.",
        )
        with self._lock:
            for version in self._versions.values():
                if not version.name:
                    continue  # ids are unbounded: never labels
                for feature in version.features:
                    index = feature.index_now()
                    if index is not None:
                        gauge.add_metric([version.name, str(version.number), feature.name], index)
            dropped.add_metric([], self.dropped)
        return [gauge, dropped]


async def drift_response(models: ModelCatalog, reference: str) -> models_pb2.GetModelDriftResponse:
    """GetModelDrift: NAME, NAME/VERSION, an id, or NAME@ALIAS (a weighted alias's heaviest
    route, as the registry resolves it); NOT_FOUND for no such model."""
    model_id = await models.resolve(reference)
    shown = await models.get(model_id)
    return drift_of(models).report(await models.manifest(model_id), shown.name, shown.version)


_trackers: weakref.WeakKeyDictionary[ModelCatalog, DriftTracker] = weakref.WeakKeyDictionary()
_OFF = DriftTracker(0)
_registered: DriftTracker | None = None


def attach_drift(models: ModelCatalog, window: int) -> DriftTracker:
    """A tracker of ``window`` rows for the servicers sharing ``models`` (their gateway's),
    closed when the catalog goes."""
    tracker = _trackers.get(models)
    if tracker is None:
        tracker = _trackers[models] = DriftTracker(window)
        weakref.finalize(models, tracker.close)
    return tracker


def drift_of(models: ModelCatalog) -> DriftTracker:
    """The gateway's tracker; one that tracks nothing before the inference service makes it."""
    return _trackers.get(models, _OFF)


def _register(tracker: DriftTracker) -> None:
    """One tracker on the process's registry: the latest gateway's (tests run several)."""
    global _registered
    if _registered is not None:
        _unregister(_registered)
    REGISTRY.register(tracker)
    _registered = tracker


def _unregister(tracker: DriftTracker) -> None:
    global _registered
    if _registered is tracker:
        with contextlib.suppress(KeyError):
            REGISTRY.unregister(tracker)
        _registered = None
