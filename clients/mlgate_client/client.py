"""MLGateClient: the typed Python client over one long-lived gRPC channel to one gateway or
several (see ``_channel`` for how calls are spread and moved between them)."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, Generic, Self, TypeVar

from mlgate.v1 import (
    datasets_pb2,
    datasets_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    status_pb2,
    status_pb2_grpc,
)
from mlgate_client._channel import channel_target
from mlgate_client._connection import Connection
from mlgate_client._dataset_calls import DatasetCalls
from mlgate_client._drift_calls import DriftCalls
from mlgate_client._inference_calls import InferenceCalls
from mlgate_client._registry_calls import RegistryCalls
from mlgate_client._requests import (
    KINDS,
    STATES,
    choice,
    columns_request,
    struct,
    train_request,
    upload_requests,
)
from mlgate_client._score_calls import ScoreCalls
from mlgate_client._search_calls import SearchCalls
from mlgate_client._security import TLS, open_channel, tls_from_env, token_from_env
from mlgate_client._shadow_calls import ShadowCalls
from mlgate_client._streams import EventCallback, EventStreams
from mlgate_client.results import Dataset, Job, Model, PredictResult, TrainResult
from mlgate_client.status import Status, Worker

__all__ = ["DEFAULT_ADDRESS", "MLGateClient", "Page"]

DEFAULT_ADDRESS = "localhost:50051"
CHUNK_SIZE = 1024 * 1024

T = TypeVar("T")
Resp = TypeVar("Resp")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; pass ``next_page_token`` back for the next, empty on the last."""

    items: tuple[T, ...]
    next_page_token: str


class MLGateClient(
    Connection,
    RegistryCalls,
    InferenceCalls,
    ShadowCalls,
    DriftCalls,
    DatasetCalls,
    ScoreCalls,
    SearchCalls,
    EventStreams,
):
    """A client of an mlgate gateway, or of several: ``address`` is ``HOST:PORT``, several of them
    comma-separated (``gw1:50051,gw2:50051``), a DNS name with a record per gateway, or a gRPC
    target. Calls are spread over the gateways that answer; a read that one fails with
    UNAVAILABLE is tried on another, and a followed job resumes on another from its last event.

    ``timeout`` bounds each short call (get, list, cancel, delete, upload, submit) in seconds;
    train, predict and watch follow a job until it ends however long it runs, and if their
    stream breaks with UNAVAILABLE they wait up to ``resume_timeout`` seconds for the gateway
    and resume it where it left off. The first call waits up to ``connect_timeout`` seconds for
    a gateway that does not answer yet (one that is starting), calling ``on_wait(address)`` if
    it is not there at once. ``tls`` (True, or a ``TLS`` naming the CA and a client
    certificate) connects over TLS; ``token`` is sent as ``authorization: Bearer <token>``.
    Use as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout: float | None = None,
        resume_timeout: float = 30.0,
        tls: TLS | bool = False,
        token: str | None = None,
        connect_timeout: float = 0.0,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.address = address
        self._timeout = timeout
        self._resume_timeout = resume_timeout
        self._connect_timeout = connect_timeout
        self._on_wait = on_wait
        self._connected = connect_timeout <= 0
        target, options = channel_target(address)
        self._tls = TLS() if tls is True else tls or None
        self._channel = open_channel(target, self._tls, token, options)
        self._jobs = jobs_pb2_grpc.JobServiceStub(self._channel)
        self._models = models_pb2_grpc.ModelServiceStub(self._channel)
        self._datasets = datasets_pb2_grpc.DatasetServiceStub(self._channel)
        self._status = status_pb2_grpc.StatusServiceStub(self._channel)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, timeout: float | None = None
    ) -> Self:
        """A client of ``$MLGATE_ADDRESS``, or of localhost:50051 when it is unset, with the
        token of ``$MLGATE_TOKEN`` and TLS as ``$MLGATE_TLS`` and ``$MLGATE_TLS_*`` say."""
        env = os.environ if env is None else env
        return cls(
            env.get("MLGATE_ADDRESS") or DEFAULT_ADDRESS,
            timeout=timeout,
            tls=tls_from_env(env) or False,
            token=token_from_env(env),
        )

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Jobs

    def train(
        self,
        dataset_id: str,
        target: str,
        features: Sequence[str] = (),
        estimator: str = "",
        params: Mapping[str, Any] | None = None,
        task: str | None = None,
        test_size: float | None = None,
        random_seed: int | None = None,
        on_event: EventCallback | None = None,
        model_name: str = "",
        timeout_seconds: float | None = None,
        impute: str = "",
        exclude: Sequence[str] = (),
    ) -> TrainResult:
        """Train a model and wait for it; ``on_event`` sees every event of the job as it happens.
        With ``model_name``, the model is registered as that name's next version;
        ``timeout_seconds`` bounds the fit (the server's limit caps it); ``impute`` fills blanks
        (median, mean, most_frequent or constant:VALUE); ``exclude`` leaves columns out of the
        features.

        Raises JobFailed or JobCancelled when the job ends that way.
        """
        request = train_request(
            dataset_id,
            target,
            features,
            estimator,
            params,
            task,
            test_size,
            random_seed,
            impute=impute,
            exclude=exclude,
        )
        request.model_name = model_name
        if timeout_seconds is not None:
            request.timeout_seconds = timeout_seconds
        final = self._finish(self._events(lambda: self._jobs.Train(request)), on_event)
        return TrainResult.from_event(final)

    def submit_train(
        self,
        dataset_id: str,
        target: str,
        features: Sequence[str] = (),
        estimator: str = "",
        params: Mapping[str, Any] | None = None,
        task: str | None = None,
        test_size: float | None = None,
        random_seed: int | None = None,
        model_name: str = "",
        timeout_seconds: float | None = None,
        impute: str = "",
        exclude: Sequence[str] = (),
    ) -> str:
        """Queue a training job and return its id without waiting; see ``wait`` and ``watch``."""
        request = train_request(
            dataset_id,
            target,
            features,
            estimator,
            params,
            task,
            test_size,
            random_seed,
            impute=impute,
            exclude=exclude,
        )
        request.model_name = model_name
        if timeout_seconds is not None:
            request.timeout_seconds = timeout_seconds
        return self._submitted(lambda: self._jobs.Train(request, timeout=self._timeout), "Train")

    def predict(
        self,
        model_id: str,
        rows: Sequence[Mapping[str, Any]] | Mapping[str, Iterable[Any]],
        on_event: EventCallback | None = None,
        routing_key: str = "",
    ) -> PredictResult:
        """Predict one value per row and wait for them. ``rows`` is a list of dicts keyed by
        feature name, or columns: one dict mapping each feature to its values in row order
        (lists or numpy arrays), which cost far less to send and evaluate. ``model_id`` is any
        model reference: an id, NAME, NAME/VERSION or NAME@ALIAS; the result's ``model_id``,
        ``model_name`` and ``model_version`` are the model that answered. Through a weighted
        alias, requests with the same ``routing_key`` go to the same version."""
        if isinstance(rows, Mapping):
            request = columns_request(model_id, rows)
        else:
            request = jobs_pb2.PredictRequest(
                model_id=model_id, rows=[struct(row, f"rows[{i}]") for i, row in enumerate(rows)]
            )
        request.routing_key = routing_key
        final = self._finish(self._events(lambda: self._jobs.Predict(request)), on_event)
        return PredictResult.from_event(final)

    def wait(
        self, job_id: str, on_event: EventCallback | None = None
    ) -> TrainResult | PredictResult:
        """Wait for a job (for example one from ``submit_train``) to end and return its result."""
        final = self._finish(self.watch(job_id), on_event)
        if final.HasField("predict_result"):
            return PredictResult.from_event(final)
        return TrainResult.from_event(final)

    def watch(self, job_id: str, after_seq: int = 0) -> Generator[jobs_pb2.JobEvent]:
        """The job's events after ``after_seq``, then the live ones, until it ends."""
        request = jobs_pb2.WatchJobRequest(job_id=job_id, after_seq=after_seq)
        return self._events(lambda: self._jobs.WatchJob(request), job_id, after_seq)

    def get_job(self, job_id: str) -> Job:
        response = self._unary(self._jobs.GetJob, jobs_pb2.GetJobRequest(job_id=job_id))
        return Job.from_proto(response.job)

    def list_jobs(
        self,
        kind: str | None = None,
        state: str | None = None,
        page_size: int = 50,
        parent: str = "",
    ) -> Iterator[Job]:
        """Every job, newest first, optionally only one ``kind`` (train, predict, search, score,
        trial, shard) and ``state`` (queued, running, succeeded, failed, cancelled); pages are
        fetched as you iterate. Trial and shard jobs are left out unless ``kind`` names them or
        ``parent`` is the id of the search or scoring job whose children to list."""
        return _all_pages(lambda token: self.list_jobs_page(kind, state, page_size, token, parent))

    def list_jobs_page(
        self,
        kind: str | None = None,
        state: str | None = None,
        page_size: int = 50,
        page_token: str = "",
        parent: str = "",
    ) -> Page[Job]:
        request = jobs_pb2.ListJobsRequest(
            page_size=page_size,
            page_token=page_token,
            kind=choice(KINDS, kind, "kind", jobs_pb2.JOB_KIND_UNSPECIFIED),
            state=choice(STATES, state, "state", jobs_pb2.JOB_STATE_UNSPECIFIED),
            parent_job_id=parent,
        )
        response = self._unary(self._jobs.ListJobs, request)
        return Page(tuple(map(Job.from_proto, response.jobs)), response.next_page_token)

    def cancel_job(self, job_id: str) -> Job:
        """Cancel a job that has not ended; returns its record afterwards."""
        response = self._unary(self._jobs.CancelJob, jobs_pb2.CancelJobRequest(job_id=job_id))
        return Job.from_proto(response.job)

    # Models

    def get_model(self, model_id: str) -> Model:
        """The model a reference (id, NAME, NAME/VERSION or NAME@ALIAS) means."""
        response = self._unary(self._models.GetModel, models_pb2.GetModelRequest(model_id=model_id))
        return Model.from_proto(response.model)

    def list_models(self, page_size: int = 50, name: str = "") -> Iterator[Model]:
        """Every model, newest first; with ``name``, that name's versions, highest first."""
        return _all_pages(lambda token: self.list_models_page(page_size, token, name))

    def list_models_page(
        self, page_size: int = 50, page_token: str = "", name: str = ""
    ) -> Page[Model]:
        request = models_pb2.ListModelsRequest(
            page_size=page_size, page_token=page_token, name=name
        )
        response = self._unary(self._models.ListModels, request)
        return Page(tuple(map(Model.from_proto, response.models)), response.next_page_token)

    def delete_model(self, model_id: str, force: bool = False) -> tuple[str, tuple[str, ...]]:
        """Delete the model a reference means; its id and the aliases removed with it. A version
        that aliases point at needs ``force``."""
        request = models_pb2.DeleteModelRequest(model_id=model_id, force=force)
        response = self._unary(self._models.DeleteModel, request)
        return response.model_id, tuple(response.removed_aliases)

    # Datasets

    def upload_dataset(
        self,
        dataset_id: str,
        source: str | os.PathLike[str] | IO[bytes],
        chunk_size: int = CHUNK_SIZE,
        replace: bool = False,
        delimiter: str = "",
        format: str = "",
    ) -> Dataset:
        """Store a CSV or Parquet file (a path or a binary file object) as ``dataset_id``, in
        chunks. An existing dataset is ALREADY_EXISTS unless ``replace``. ``format`` ("csv" or
        "parquet") and a CSV's ``delimiter`` (``,`` ``;`` tab or ``|``) are detected from the
        file when empty."""
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        # Opened here, not in the request iterator, so a missing file raises in the caller.
        file = open(source, "rb") if isinstance(source, (str, os.PathLike)) else source  # noqa: SIM115
        try:
            chunks = upload_requests(dataset_id, file, chunk_size, replace, delimiter, format)
            response = self._unary(self._datasets.UploadDataset, chunks)
        finally:
            if file is not source:
                file.close()
        return Dataset.from_proto(response.dataset)

    def get_dataset(self, dataset_id: str) -> Dataset:
        request = datasets_pb2.GetDatasetRequest(dataset_id=dataset_id)
        return Dataset.from_proto(self._unary(self._datasets.GetDataset, request).dataset)

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete an uploaded dataset; models trained on it keep its recorded digest."""
        request = datasets_pb2.DeleteDatasetRequest(dataset_id=dataset_id)
        self._unary(self._datasets.DeleteDataset, request)

    def list_datasets(self, page_size: int = 50) -> Iterator[Dataset]:
        """Every dataset, the built-in ones included."""
        return _all_pages(lambda token: self.list_datasets_page(page_size, token))

    def list_datasets_page(self, page_size: int = 50, page_token: str = "") -> Page[Dataset]:
        request = datasets_pb2.ListDatasetsRequest(page_size=page_size, page_token=page_token)
        response = self._unary(self._datasets.ListDatasets, request)
        return Page(tuple(map(Dataset.from_proto, response.datasets)), response.next_page_token)

    # Operations

    def status(self) -> Status:
        """The gateway's view of its broker, job store, storage, workers and queues."""
        return Status.from_proto(self._unary(self._status.GetStatus, status_pb2.GetStatusRequest()))

    def list_workers(self) -> list[Worker]:
        """The workers the gateway hears by their heartbeats, with the jobs each is running."""
        response = self._unary(self._status.ListWorkers, status_pb2.ListWorkersRequest())
        return [Worker.from_proto(worker) for worker in response.workers]


def _all_pages(fetch: Callable[[str], Page[T]]) -> Iterator[T]:
    token = ""
    while True:
        page = fetch(token)
        yield from page.items
        if not page.next_page_token:
            return
        token = page.next_page_token
