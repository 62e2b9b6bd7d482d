"""The gateway process: the gRPC server, its health and reflection services, and graceful shutdown.

Stopping drains: health says NOT_SERVING first (every service name but ``liveness``, which stays
SERVING while the process answers), calls are still taken for ``drain_delay`` seconds so that load
balancers stop sending, then new calls are refused and running ones have ``drain_grace`` seconds to
finish; submissions under way end queued or FAILED, and their outbox marks are flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from brokers import Broker, BrokerUnavailable, open_broker
from mlgate.failures import Backends
from mlgate.metrics import BrokerCollector, serve_metrics
from mlgate.metrics_http import MetricsServer
from mlgate.tokens import TokenFile
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
from server.auth import AuthInterceptor
from server.batching import Batcher
from server.data_lock import DataDirLock
from server.dataset_service import DatasetServicer
from server.export_check import ExportCheck
from server.heartbeats import Heartbeats
from server.hub import Hub
from server.infer_limits import RequestLimits
from server.inference_rest import InferenceRoutes, too_large
from server.inference_service import SERVICE_NAME as INFERENCE_SERVICE
from server.inference_service import InferenceServicer, add_inference_service
from server.interceptors import edge_chain
from server.job_service import JobServicer
from server.jobstore import JobStore, open_job_store
from server.manifests import ManifestCache
from server.model_catalog import ModelCatalog
from server.model_service import ModelServicer
from server.outbox import Outbox
from server.recorder import Recorder
from server.rest import RestServer
from server.settings import DRAIN_GRACE, MAX_MESSAGE_BYTES, GatewaySettings
from server.status_service import Dependencies, StatusServicer
from server.submit import Submitter, requeue_unfinished
from server.transport import SERVER_OPTIONS, listen
from storage import open_object_store
from storage.datasets import DatasetCatalog
from storage.models import ModelRepository

if TYPE_CHECKING:
    from workers.settings import WorkerSettings
    from workers.worker import Worker

__all__ = ["LIVENESS_SERVICE", "SERVICE_NAMES", "Gateway", "serve"]

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    models_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
    datasets_pb2.DESCRIPTOR.services_by_name["DatasetService"].full_name,
    status_pb2.DESCRIPTOR.services_by_name["StatusService"].full_name,
    INFERENCE_SERVICE,
)
# Each check is a round trip to the job store and the storage; often enough for orchestrators.
_HEALTH_INTERVAL = 2.0
#: A health service name that is SERVING while the process answers, whatever its dependencies
#: say: for a liveness probe, which must not restart a gateway that waits out a broker outage.
LIVENESS_SERVICE = "liveness"


class Gateway:
    """A running gateway; given ``workers`` settings it also runs a worker on the same broker
    (``mlgate serve``)."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        workers: WorkerSettings | None = None,
        after_record: Callable[[jobs_pb2.Job], None] | None = None,
    ) -> None:
        self.settings = settings
        self.broker: Broker = open_broker(settings.broker)
        self.store: JobStore = open_job_store(
            settings.store_url,
            settings.broker.namespace,
            ca_file=settings.broker.ca_file or None,
            retention=settings.job_retention,
        )
        objects = open_object_store(settings.storage_url)
        self.backends = Backends.of(self.broker.name, settings.storage_url, settings.store_url)
        self.heartbeats = Heartbeats(self.broker, publish_timeout=settings.publish_timeout)
        self.dependencies = Dependencies(
            self.backends, self.broker, self.store, objects, self.heartbeats
        )
        # A broker that keeps no jobs (the embedded one) makes this server its data's only one.
        self._data_lock = None if self.broker.keeps_jobs else DataDirLock(settings.data_dir)
        self.catalog = DatasetCatalog(objects)
        self.models = ModelRepository(objects, settings.max_model_bytes)
        self.hub = Hub(self.store.events)
        self.outbox = Outbox(
            self.broker,
            self.store,
            self.models,
            self.hub,
            after=settings.outbox_after,
            give_up=settings.outbox_give_up,
            publish_timeout=settings.publish_timeout,
        )
        # ``after_record``: a test's fault point (server.main), None in service.
        self.submitter = Submitter(
            self.broker,
            self.store,
            self.hub,
            self.outbox,
            publish_timeout=settings.publish_timeout,
            after_record=after_record,
        )
        # Read now, so a missing or malformed tokens file stops start-up with one line.
        self.tokens = TokenFile(settings.auth_tokens_file) if settings.auth_tokens_file else None
        self.workers = self._embedded_worker(workers) if workers is not None else []
        self.port = 0
        self.metrics_port: int | None = None
        self._metrics: MetricsServer | None = None
        #: The inference protocol's REST port, when MLGATE_HTTP_PORT is set.
        self.http_port: int | None = None
        self._http: RestServer | None = None
        self._server: grpc.aio.Server | None = None
        self._recorder: Recorder | None = None
        self._batcher: Batcher | None = None
        self._health = health_aio.HealthServicer()
        self._watchdog: asyncio.Task[None] | None = None
        self._unhealthy: list[status_pb2.Dependency] = []

    def _embedded_worker(self, settings: WorkerSettings) -> list[Worker]:
        # Imported only here: workers load scikit-learn, and `mlgate gateway` must not.
        from workers.worker import Worker

        return [Worker(self.broker, self.catalog, self.models, settings)]

    async def start(self) -> int:
        """Connect, start serving and return the bound port (useful with port 0).

        The port is bound first, so a port in use fails (PortInUse) before anything connects;
        before it, a data directory another server owns fails (DataDirInUse).
        """
        if self._data_lock is None:
            return await self._start()
        self._data_lock.acquire()
        try:
            return await self._start()
        except BaseException:
            self._data_lock.release()
            raise

    async def _start(self) -> int:
        server = grpc.aio.server(
            # Authentication first: a caller it refuses reaches nothing else.
            interceptors=[AuthInterceptor(self.tokens), *edge_chain(self.backends)],
            options=[
                ("grpc.max_receive_message_length", self.settings.max_message_bytes),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                *SERVER_OPTIONS,
            ],
        )
        settings = self.settings
        self.port = listen(server, settings.host, settings.port, settings.tls)
        if settings.http_port is not None:  # bound now, answering once everything is ready
            self._http = RestServer(
                max_body=settings.infer_max_bytes,
                too_large=lambda size: too_large(size, settings.infer_max_bytes),
            )
            self.http_port = await self._http.bind(
                settings.host, settings.http_port, settings.tls, "MLGATE_HTTP_PORT"
            )
        try:
            await asyncio.to_thread(self.broker.start)
        except BrokerUnavailable as exc:
            # Serve anyway: health says NOT_SERVING and submissions get UNAVAILABLE until it is back.
            log.warning("broker unavailable at start, serving NOT_SERVING: %s", exc)
        self.heartbeats.start()
        if not self.broker.keeps_jobs:
            requeued = await asyncio.to_thread(
                requeue_unfinished,
                self.broker,
                self.store,
                self.models,
                self.settings.publish_timeout,
            )
            if requeued:
                log.info("requeued %d unfinished jobs from the job store", requeued)
        # After the requeue, which clears the marks of what it queued: swept once, not twice.
        self.outbox.start()
        loop = asyncio.get_running_loop()
        self._recorder = Recorder(self.broker, self.store, self.models, self.hub, loop)
        self._recorder.start()
        for worker in self.workers:
            worker.start()
        # Its reply path may take a round trip to set up: not on the loop.
        self._batcher = await asyncio.to_thread(
            lambda: Batcher(
                self.broker,
                loop,
                max_rows=settings.batch_max_rows,
                max_delay=settings.batch_max_delay_us / 1e6,
                max_bytes=settings.infer_max_bytes_in_flight,
            )
        )
        models = ModelCatalog(self.store.registry, self.models, ManifestCache(self.models))
        jobs_pb2_grpc.add_JobServiceServicer_to_server(
            JobServicer(
                self.broker,
                self.store,
                self.catalog,
                models,
                self.hub,
                self.submitter,
                publish_timeout=settings.publish_timeout,
                max_predict_rows=settings.max_predict_rows,
            ),
            server,
        )
        models_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(models, ExportCheck(settings.max_model_bytes)), server
        )
        datasets_pb2_grpc.add_DatasetServiceServicer_to_server(
            DatasetServicer(self.catalog), server
        )
        status_pb2_grpc.add_StatusServiceServicer_to_server(
            StatusServicer(self.dependencies, self.broker), server
        )
        inference = InferenceServicer(
            models,
            self._batcher,
            self.broker.healthy,
            timeout=settings.infer_timeout,
            limits=RequestLimits(settings.infer_max_rows, settings.infer_max_bytes),
            drift_window=settings.drift_window,
        )
        add_inference_service(inference, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        await server.start()
        self._server = server
        if self._http is not None:
            await self._http.start(InferenceRoutes(inference, self.tokens, self.backends))
            log.info(
                "Open Inference Protocol REST on %s://%s:%d/v2",
                self._http.scheme,
                settings.host,
                self.http_port,
            )
        await self._health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        await self._update_health()
        self._watchdog = asyncio.create_task(self._watch_health())
        if settings.metrics_port is not None:
            self._metrics = serve_metrics(
                settings.metrics_port,
                settings.metrics_host,
                BrokerCollector(self.dependencies.broker_figures),
                tls=settings.metrics_tls,
            )
            self.metrics_port = self._metrics.port
        log.info("mlgate gateway on port %d (%s)", self.port, self.settings.describe())
        if self.tokens is None:
            log.warning(
                "no MLGATE_AUTH_TOKENS_FILE: the gateway is open, every caller may do everything"
            )
        else:
            log.info("token roles from %s: %d tokens", self.tokens.path, len(self.tokens))
        return self.port

    @property
    def batcher(self) -> Batcher | None:
        """ModelInfer's batcher, once started (what it holds is observable: tests, the bench)."""
        return self._batcher

    async def _update_health(self) -> None:
        # SERVING only while every dependency answers: the broker, the job store and the storage.
        found = await asyncio.to_thread(self.dependencies.check)
        unhealthy = [d for d in found if not d.healthy]
        if unhealthy != self._unhealthy:
            for dependency in unhealthy:
                log.warning("not serving: %s: %s", dependency.name, dependency.detail)
            if not unhealthy and self._unhealthy:
                log.info("serving again: every dependency answers")
            self._unhealthy = unhealthy
        await self._set_readiness(
            health_pb2.HealthCheckResponse.NOT_SERVING
            if unhealthy
            else health_pb2.HealthCheckResponse.SERVING
        )

    async def _set_readiness(self, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        # Every name but LIVENESS_SERVICE: a gateway that is unready, or draining, is still alive.
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, status)

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(_HEALTH_INTERVAL)
            await self._update_health()

    async def stop(self, grace: float = DRAIN_GRACE) -> None:
        """Drain (see the module's docstring): NOT_SERVING, ``drain_delay`` seconds still taking
        calls, then refuse new calls and give running ones ``grace`` seconds; then release
        everything."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        # Nothing sets health after this: the watchdog, the only other writer, is gone.
        await self._set_readiness(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._server is not None and self.settings.drain_delay:
            log.info(
                "draining: NOT_SERVING; still taking calls for %g s", self.settings.drain_delay
            )
            await asyncio.sleep(self.settings.drain_delay)
        if self._http is not None:
            # Beside the gRPC server's stop, with the same grace for the calls under way.
            http_closed = asyncio.create_task(self._http.close(grace))
        if self._server is not None:
            await self._server.stop(grace)
        if self._http is not None:
            await http_closed
        if self._batcher is not None:
            self._batcher.close()
        # Calls cancelled by the stop may have left submissions under way: let them finish,
        # then flush their marks.
        await self.submitter.drain()
        await self.outbox.stop()
        for worker in self.workers:
            await asyncio.to_thread(worker.stop, grace)
        if self._recorder is not None:
            await asyncio.to_thread(self._recorder.stop, 5.0)
        await asyncio.to_thread(self.heartbeats.stop)
        await asyncio.to_thread(self.broker.close)
        self.store.close()
        if self._data_lock is not None:
            self._data_lock.release()
        if self._metrics is not None:
            await asyncio.to_thread(self._metrics.close)

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


async def _serve(
    settings: GatewaySettings,
    workers: WorkerSettings | None,
    on_ready: Callable[[str, int], None] | None,
    after_record: Callable[[jobs_pb2.Job], None] | None,
) -> None:
    gateway = Gateway(settings, workers=workers, after_record=after_record)
    # Before starting: the server answers calls before start() returns, and a SIGTERM from
    # then on must drain it, not kill it.
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await gateway.start()
    print(f"mlgate {'serving' if workers else 'gateway'} on port {gateway.port}", flush=True)
    if on_ready is not None:
        on_ready(settings.host, gateway.port)
    await stopping.wait()
    log.info("stopping: draining, running calls get %g s", settings.drain_grace)
    await gateway.stop(settings.drain_grace)


def serve(
    settings: GatewaySettings,
    *,
    workers: WorkerSettings | None = None,
    on_ready: Callable[[str, int], None] | None = None,
    after_record: Callable[[jobs_pb2.Job], None] | None = None,
) -> None:
    """Run a gateway (and a worker, given ``workers`` settings) until SIGTERM or SIGINT, then
    drain gracefully; ``on_ready(host, port)`` is called once it serves. ``after_record`` is a
    test's fault point (``server.main``)."""
    asyncio.run(_serve(settings, workers, on_ready, after_record))
