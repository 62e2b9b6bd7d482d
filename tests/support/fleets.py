"""Several gateway processes as one service, for tests: the job stores a fleet shares (each under
a fresh namespace of the test's) and a cluster of gateways and workers recording in one."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.cluster import Cluster, delete_cluster_namespace

__all__ = ["BROKERS", "STORES", "SharedStore", "fleet_cluster", "require_broker"]

#: The brokers a fleet runs on: the ones whose queues outlive a gateway.
BROKERS = ["rabbitmq", "redis"]


@dataclass(frozen=True)
class SharedStore:
    """A job store every gateway of the fleet records in, under a namespace of the test's."""

    require: Callable[[], object]
    #: The URL of the namespace's space in the store, made if the store needs that.
    url: Callable[[str], str]
    delete: Callable[[str], None]


def _redis_store() -> SharedStore:
    from tests.support.redis import SHARED_URL, delete_namespace, require_redis

    return SharedStore(
        require_redis,
        lambda namespace: f"{SHARED_URL}?namespace={namespace}",
        lambda namespace: delete_namespace(SHARED_URL, namespace),
    )


def _postgres_store() -> SharedStore:
    import psycopg

    from tests.support.postgres import SHARED_URL, in_schema, require_postgres

    def schema(namespace: str) -> str:
        return namespace.replace("-", "_")

    def make(namespace: str) -> str:
        with psycopg.connect(SHARED_URL, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema(namespace)}")
        return in_schema(SHARED_URL, schema(namespace))

    def drop(namespace: str) -> None:
        with psycopg.connect(SHARED_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema(namespace)} CASCADE")

    return SharedStore(require_postgres, make, drop)


#: Each shared job store a fleet is tried on.
STORES: dict[str, Callable[[], SharedStore]] = {
    "redis": _redis_store,
    "postgresql": _postgres_store,
}


def require_broker(broker: str) -> None:
    """Fail the test, saying how to start it, unless ``broker``'s shared server answers."""
    if broker == "redis":
        from tests.support.redis import require_redis

        require_redis()
    else:
        from tests.support.rabbitmq import require_rabbitmq

        require_rabbitmq()


@contextmanager
def fleet_cluster(
    tmp: Path,
    broker: str,
    store: SharedStore | str,
    env: Mapping[str, str] | None = None,
) -> Iterator[Cluster]:
    """A cluster on ``broker`` whose gateways all record in ``store`` (a ``SharedStore``, or a
    job store URL of the test's own); the test starts the gateways and workers. Everything the
    cluster left on the shared servers is removed afterwards."""
    require_broker(broker)
    cluster = Cluster(tmp, broker, env)
    namespace = f"{cluster.namespace}-jobs"
    if isinstance(store, SharedStore):
        store.require()
        cluster.env["MLGATE_STORE_URL"] = store.url(namespace)
    else:
        cluster.env["MLGATE_STORE_URL"] = store
    try:
        yield cluster
    finally:
        cluster.stop()
        delete_cluster_namespace(broker, cluster.namespace)
        if isinstance(store, SharedStore):
            store.delete(namespace)
