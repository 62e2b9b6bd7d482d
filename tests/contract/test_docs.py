"""Every command block of the README and docs/*.md is run as written by a test, on the broker it
names, or is excused below with the reason it cannot run here."""

from __future__ import annotations

import fcntl
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from server.jobstore.postgres_schema import LATEST_VERSION
from tests.support import postgres, rabbitmq
from tests.support import redis as shared_redis
from tests.support.fresh import free_ports, unique_namespace
from tests.support.walkthroughs import (
    DOCUMENTS,
    ROOT,
    RUNNABLE,
    blocks,
    environment,
    run_walkthrough,
    script,
)

DOCS = ROOT / "docs"
_SERVER_START = "starts the machine's shared {} server, which `make services` runs for the tests"
_TEST_SUITE = "runs tests of this suite: the suite does not run itself"
_DOCKER = (
    "needs Docker, which our machines do not have; tests/deploy/test_compose.py checks "
    "compose.yaml and the Dockerfile statically"
)
_CLUSTER = (
    "needs a Kubernetes cluster, which our machines do not have; tests/deploy/test_kubernetes.py "
    "renders both overlays and validates every object against its schema"
)
_TEMPLATE = (
    "a template to fill in with your own bucket and credentials; the SeaweedFS walkthrough of "
    "docs/s3.md runs the same settings against a local server"
)

# (document, a command in the block) -> why the block is not run.
NOT_RUN = {
    ("README.md", "make run "): "`make run` is tests/contract/test_make.py's; `make test` is this suite",
    ("docs/brokers.md", "export MLGATE_STORAGE_URL=s3://my-bucket/mlgate"): _TEMPLATE,
    ("docs/development.md", "make test-fast"): _TEST_SUITE,
    ("docs/cli.md", "tls=TLS(ca_file="): (
        "needs a gateway serving TLS, certificates and a token; docs/security.md's walkthrough "
        "connects the same way, and tests/security/test_tls.py with these arguments"
    ),
    ("docs/compose.md", "docker compose up --build -d"): _DOCKER,
    ("docs/compose.md", "MLGATE_BROKER=redis docker compose up -d"): _DOCKER,
    ("docs/compose.md", "docker compose up -d --scale worker=4"): _DOCKER,
    ("docs/compose.md", "docker run --rm mlgate:local --help"): _DOCKER,
    ("docs/kubernetes.md", "docker build -t registry.example.com/mlgate"): _DOCKER,
    ("docs/kubernetes.md", "kubectl apply -k deploy/kubernetes/overlays/redis"): _CLUSTER,
    ("docs/kubernetes.md", "kubectl -n mlgate port-forward"): _CLUSTER,
    ("docs/rabbitmq.md", "rabbitmq-server -detached"): _SERVER_START.format("RabbitMQ"),
    ("docs/rabbitmq.md", "rabbitmqctl import_definitions"): (
        "rewrites the shared node's users and the default namespace's queues; the private node "
        "of tests/brokers/test_rabbitmq.py boots with this file"
    ),
    ("docs/rabbitmq.md", "rabbitmqctl list_queues"): (
        "needs the node's Erlang cookie (root or the rabbitmq user), which a test run may not have"
    ),
    ("docs/cli.md", "mlgate predict diabetes-rf --csv rows.csv"): (
        "needs a rows.csv of the reader's; docs/prediction.md's inference walkthrough runs "
        "`mlgate predict --csv` as written"
    ),
    ("docs/rabbitmq.md", ".venv/bin/pytest tests/brokers"): _TEST_SUITE,
    ("docs/postgresql.md", "@db.internal:5432/mlgate?sslmode=verify-full"): (
        "an example URL for a PostgreSQL elsewhere, with a password and TLS"
    ),
    ("docs/postgresql.md", ".venv/bin/python -m pytest tests/jobstore"): _TEST_SUITE,
    ("docs/redis.md", "redis-server --daemonize yes"): _SERVER_START.format("Redis"),
    ("docs/redis.md", "@redis.internal:6379"): "an example URL for a Redis elsewhere, with a password",
    ("docs/redis.md", ".venv/bin/python -m pytest tests/brokers tests/jobstore"): _TEST_SUITE,
    ("docs/s3.md", "export MLGATE_STORAGE_URL=s3://my-bucket/mlgate"): _TEMPLATE,
    ("docs/s3.md", "export MLGATE_S3_ENDPOINT_URL=http://127.0.0.1:8333   # or"): _TEMPLATE,
    ("docs/s3.md", "python -m storage.s3 create-bucket   "): _TEMPLATE,
    ("docs/s3.md", ".venv/bin/pytest tests/storage"): _TEST_SUITE,
}  # fmt: skip


def test_every_command_block_runs_in_a_walkthrough_or_says_why_not() -> None:
    """Each block is in a walkthrough, or exactly one excuse names a command in it."""
    unaccounted, used = [], set()
    for document in DOCUMENTS:
        for block in blocks(document):
            if block.language not in RUNNABLE or block.walkthrough is not None:
                continue
            name = str(document.relative_to(ROOT))
            excuses = [key for key in NOT_RUN if key[0] == name and key[1] in block.code]
            if len(excuses) != 1:
                unaccounted.append(f"{block.where} ({len(excuses)} excuses): {block.first_line}")
            used.update(excuses)
    assert not unaccounted, "blocks neither run nor excused once:\n" + "\n".join(unaccounted)
    assert not set(NOT_RUN) - used, f"excuses for blocks that are gone: {set(NOT_RUN) - used}"


# A model version a walkthrough names as a number, which only a fresh data directory makes true.
_FIXED_VERSION = re.compile(r'\bdiabetes-rf/[0-9]|\bproduction [0-9]\b|"version": [0-9]')


def test_walkthroughs_naming_a_version_number_say_they_need_a_fresh_data_directory() -> None:
    """A walkthrough that names a version by its number works only where the name is new: its
    document says so, or the walkthrough makes a job store of its own (docs/postgresql.md's
    database). One that reads the numbers from the trainings, as docs/registry.md's does, runs
    anywhere and needs neither."""
    silent = []
    for document in DOCUMENTS:
        fixed = {
            block.walkthrough
            for block in blocks(document)
            if block.walkthrough is not None and _FIXED_VERSION.search(block.code)
        }
        text = " ".join(document.read_text().split())
        if fixed and not ("fresh data directory" in text or "a database of its own" in text):
            silent.append(f"{document.relative_to(ROOT)} ({', '.join(sorted(fixed))})")
    assert not silent, (
        f"walkthroughs that assume a fresh data directory without saying so: {silent}"
    )


def _summary(out: str, count: int = 1) -> list[str]:
    """The jobs of `mlgate train`'s summaries (job, model, metrics), at least ``count`` of them."""
    jobs = re.findall(
        r"^job: +(job_[0-9a-f]{32})\nmodel: +mdl_[0-9a-f]{32}.*\nmetrics: ", out, re.M
    )
    assert len(jobs) >= count, out
    return jobs


def test_cli_walkthrough(tmp_path: Path) -> None:
    """docs/cli.md top to bottom: `mlgate serve` in a second terminal, the Python client, a
    gateway and worker on Redis, then every command example in order."""
    url = shared_redis.require_redis()
    namespace = unique_namespace()
    serve, gateway = free_ports(2)
    env = environment(tmp_path, MLGATE_NAMESPACE=namespace, MLGATE_ADDRESS=f"localhost:{serve}")
    ports = {"50051": str(serve), "50052": str(gateway)}
    try:
        out = run_walkthrough(script(DOCS / "cli.md", "cli", ports), tmp_path, env).stdout
    finally:
        shared_redis.delete_namespace(url, namespace)
    # The client's forest predicts the README's patient; the invalid depth names its field.
    assert re.search(r"^mdl_[0-9a-f]{32} \{.*'rmse': 53\.0", out, re.M), out
    assert "(208.64" in out
    assert re.search(
        r"^params\.max_depth params\.max_depth: .* needs an int .* or null;", out, re.M
    )
    _summary(out, 4)
    assert re.search(r"^0 +208\.645$", out, re.M)  # the predict table
    assert re.search(r"had already ended: succeeded$", out, re.M)
    assert (tmp_path / "forest.model").is_file() and (
        tmp_path / "forest.model.manifest.json"
    ).is_file()
    assert re.search(r"^id: +houses$", out, re.M)


def test_fleet_walkthrough(tmp_path: Path) -> None:
    """docs/fleet.md: two gateways and a worker on Redis, the CLI and the client given both."""
    url = shared_redis.require_redis()
    namespace = unique_namespace()
    one, two = free_ports(2)
    env = environment(tmp_path, MLGATE_NAMESPACE=namespace)
    try:
        source = script(DOCS / "fleet.md", "fleet", {"50051": str(one), "50052": str(two)})
        out = run_walkthrough(source, tmp_path, env).stdout
    finally:
        shared_redis.delete_namespace(url, namespace)
    assert re.search(r"^state: +succeeded$", out, re.M), out  # mlgate jobs get
    assert re.search(r"^job_[0-9a-f]{32} mdl_[0-9a-f]{32}$", out, re.M), out  # the client


def test_fleet_gateways_walkthrough(tmp_path: Path) -> None:
    """docs/fleet.md's gateways: two gateways on RabbitMQ and PostgreSQL, the first stopped with
    SIGTERM while the job runs; it drains, and the job is followed to its end."""
    url = rabbitmq.require_rabbitmq()
    postgres.require_postgres()
    namespace = unique_namespace()
    database = f"mlgate_doc_{uuid.uuid4().hex[:12]}"
    one, two = free_ports(2)
    env = environment(tmp_path, MLGATE_NAMESPACE=namespace)
    private = {"50051": str(one), "50052": str(two), "mlgate_fleet": database}
    try:
        done = run_walkthrough(script(DOCS / "fleet.md", "gateways", private), tmp_path, env)
    finally:
        rabbitmq.delete_namespace(url, namespace)
        postgres.drop_database(database)
    assert re.findall(r"^state: +(\w+)$", done.stdout, re.M)[-1] == "succeeded", done.stdout
    assert "draining: NOT_SERVING; still taking calls for 2 s" in done.stderr, done.stderr


def test_rabbitmq_walkthrough(tmp_path: Path) -> None:
    url = rabbitmq.require_rabbitmq()
    namespace = unique_namespace()
    (port,) = free_ports(1)
    env = environment(tmp_path, MLGATE_NAMESPACE=namespace, MLGATE_ADDRESS=f"localhost:{port}")
    try:
        done = run_walkthrough(
            script(DOCS / "rabbitmq.md", "rabbitmq", {"50051": str(port)}), tmp_path, env
        )
    finally:
        rabbitmq.delete_namespace(url, namespace)
    _summary(done.stdout)
    assert (tmp_path / "mlgate-data" / "jobs.db").is_file()


def test_redis_walkthrough(tmp_path: Path) -> None:
    url = shared_redis.require_redis()
    namespace = unique_namespace()
    (port,) = free_ports(1)
    env = environment(tmp_path, MLGATE_NAMESPACE=namespace, MLGATE_ADDRESS=f"localhost:{port}")
    try:
        done = run_walkthrough(
            script(DOCS / "redis.md", "redis", {"50051": str(port)}), tmp_path, env
        )
        (job_id,) = _summary(done.stdout)
        with redis.Redis.from_url(url) as client:
            assert client.exists(f"{namespace}:job:{job_id}")
    finally:
        shared_redis.delete_namespace(url, namespace)


def test_postgresql_walkthrough(tmp_path: Path) -> None:
    """docs/postgresql.md: a database of its own, `mlgate db upgrade`, `mlgate serve` on it in a
    second terminal, a named model predicted through its alias, the tables where the docs say."""
    postgres.require_postgres()
    database = f"mlgate_doc_{uuid.uuid4().hex[:12]}"
    (port,) = free_ports(1)
    env = environment(tmp_path, MLGATE_ADDRESS=f"localhost:{port}")
    private = {"50051": str(port), "mlgate_jobs": database}
    try:
        source = script(DOCS / "postgresql.md", "postgresql", private)
        out = run_walkthrough(source, tmp_path, env).stdout
    finally:
        postgres.drop_database(database)
    latest = f"went from schema version 0 to {LATEST_VERSION}"
    upgraded = f"(PostgreSQL at 127.0.0.1:5432/{database}) {latest}"
    assert upgraded in out, out
    assert re.search(r"^version: +diabetes-rf/1$", out, re.M), out
    assert re.search(r"^0 +208\.645$", out, re.M), out  # predicted through diabetes-rf@production
    assert re.search(r"^ +1 \| initial$", out, re.M), out  # schema_version
    assert re.search(r"^ +jobs *\n-+\n +2$", out, re.M), out  # the training and the prediction
    assert out.count(latest) == 2, "the staging schema is apart"


def test_rest_walkthrough(tmp_path: Path) -> None:
    """docs/prediction.md's REST binding: `mlgate serve` with MLGATE_HTTP_PORT in a second
    terminal, then curl reproduces the README's prediction exactly."""
    grpc_port, http_port = free_ports(2)
    env = environment(tmp_path, MLGATE_ADDRESS=f"localhost:{grpc_port}")
    ports = {"50051": str(grpc_port), "8080": str(http_port)}
    out = run_walkthrough(script(DOCS / "prediction.md", "rest", ports), tmp_path, env).stdout
    assert '{"ready": true}' in out, out
    assert '"versions": ["1"]' in out and '"platform": "mlgate_sklearn"' in out, out
    assert re.search(r'"model_name": "diabetes-rf", "model_version": "1", "id": "patient-1"', out)
    assert '"data": [208.6445780005619]' in out, out
    assert (tmp_path / "rest-data" / "jobs.db").is_file()  # the walkthrough's own data directory


# SeaweedFS's default ports, which docs/s3.md's `weed server` uses as written.
_SEAWEEDFS_PORTS = (8080, 8333, 8888, 9333, 18080, 18333, 18888, 19333)


@pytest.fixture
def seaweedfs_defaults() -> Iterator[None]:
    """The default SeaweedFS ports for one test at a time on this machine, free when it starts."""
    with open("/tmp/mlgate-doc-seaweedfs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for port in _SEAWEEDFS_PORTS:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    pytest.fail(f"port {port} is taken; docs/s3.md's SeaweedFS needs it")
        yield
        # A stopped SeaweedFS may leave its unix sockets behind, named by port.
        for stale in Path("/tmp").glob("seaweedfs-*-*.sock"):
            if any(str(port) in stale.name for port in _SEAWEEDFS_PORTS):
                stale.unlink(missing_ok=True)


def test_s3_seaweedfs_walkthrough(tmp_path: Path, seaweedfs_defaults: None) -> None:
    """docs/s3.md's local S3: SeaweedFS, the bucket, `mlgate serve` on it in a second
    terminal, and a model trained into the bucket."""
    (port,) = free_ports(1)
    env = environment(tmp_path, MLGATE_ADDRESS=f"localhost:{port}")
    private = {
        "50051": str(port),
        "/tmp/seaweedfs": str(tmp_path / "seaweedfs"),
        "source .venv/bin/activate": f"source {ROOT / '.venv' / 'bin' / 'activate'}",
    }
    # The test's own look into the bucket, while the walkthrough's SeaweedFS still runs.
    look = tmp_path / "bucket.py"
    look.write_text(_LIST_MODELS)
    source = script(DOCS / "s3.md", "seaweedfs", private) + f"python {look}\n"
    out = run_walkthrough(source, tmp_path, env).stdout
    (job_id,) = _summary(out)
    model = job_id.replace("job_", "mdl_")
    assert f"object: dev/models/{model}/manifest.json" in out.splitlines(), out


_LIST_MODELS = """import boto3

s3 = boto3.client(
    "s3",
    endpoint_url="http://127.0.0.1:8333",
    aws_access_key_id="mlgate",
    aws_secret_access_key="mlgate-local-secret",
    region_name="us-east-1",
)
for item in s3.list_objects_v2(Bucket="mlgate", Prefix="dev/models/").get("Contents", []):
    print("object:", item["Key"])
"""
