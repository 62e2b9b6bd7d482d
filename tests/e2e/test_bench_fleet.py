"""``make bench``'s fleet part, in a tiny configuration: it reports every job store and gateway
count, and leaves nothing behind on the shared servers."""

from __future__ import annotations

import psycopg
import pytest
import redis

from bench import fleet
from tests.support.postgres import require_postgres
from tests.support.redis import require_redis

SYSTEMS = {
    "sqlite, 1 gateway",
    "postgresql, 1 gateway",
    "postgresql, 2 gateways",
    "redis, 1 gateway",
    "redis, 2 gateways",
}


@pytest.mark.slow
def test_fleet_bench_reports_each_job_store_beside_sqlite() -> None:
    urls = {"postgresql": require_postgres(fleet.POSTGRES_URL), "redis": require_redis()}
    report = fleet.measure(jobs=40, rounds=1, workers=1, urls=urls)
    table = fleet.table(report)
    rows = {
        cells[0]: cells[1:]
        for line in table.splitlines()
        if line.startswith("| ") and not line.startswith("| job store")
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }
    assert set(rows) == SYSTEMS, table
    for rate, gateway_cpu, ratio, _, _ in rows.values():
        assert float(rate.split()[0]) > 0, table
        assert float(gateway_cpu.split()[0]) > 0, table
        assert ratio.endswith("x"), table
    assert rows["sqlite, 1 gateway"][2] == "1.00x", table

    # Nothing is left on the shared servers: no database, no key of any system.
    databases = [namespace.replace("-", "_") for namespace in report.namespaces]
    with psycopg.connect(urls["postgresql"]) as conn:
        query = "SELECT datname FROM pg_database WHERE datname = ANY(%s)"
        assert conn.execute(query, (databases,)).fetchall() == []
    client = redis.Redis.from_url(urls["redis"])
    try:
        for namespace in report.namespaces:
            assert list(client.scan_iter(match=f"{namespace}:*", count=1000)) == [], namespace
    finally:
        client.close()
