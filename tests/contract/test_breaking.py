"""The released contract: `buf breaking` holds protos/ to the committed image of the last release,
so an incompatible change to a field or an RPC fails the build, and additions pass."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.tools import PROTOS, ROOT, tool

RELEASED = ROOT / "protos" / "v1-release.binpb"
JOBS = Path("mlgate/v1/jobs.proto")


def _breaking(protos: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("buf", "buf-bin"), "breaking", "--against", str(RELEASED)],
        cwd=protos,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of protos/ with one edit to jobs.proto."""
    copy = tmp_path / "protos"
    shutil.copytree(PROTOS, copy)
    text = (copy / JOBS).read_text()
    assert text.count(old) == 1, f"{old!r} should occur once in {JOBS}"
    (copy / JOBS).write_text(text.replace(old, new))
    return copy


def test_the_protos_keep_the_released_contract() -> None:
    assert RELEASED.is_file(), "build it with `make release-contract` (see the README)"
    result = _breaking(PROTOS)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ("  string target = 3;", "  string target = 30;", 'field "3" with name "target"'),
        ("  string target = 3;", "  bytes target = 3;", 'changed type from "string" to "bytes"'),
        ("  string target = 3;", "  string label = 3;", 'changed name from "target" to "label"'),
        (
            "  rpc WatchJob(WatchJobRequest) returns (stream WatchJobResponse);",
            "",
            'RPC "WatchJob"',
        ),
    ],
    ids=["field-number", "field-type", "field-name", "rpc-removed"],
)
def test_an_incompatible_change_fails_the_check(
    tmp_path: Path, old: str, new: str, complaint: str
) -> None:
    result = _breaking(_edited(tmp_path, old, new))
    assert result.returncode != 0
    assert complaint in result.stdout, result.stdout + result.stderr


def test_adding_a_field_and_an_rpc_passes(tmp_path: Path) -> None:
    copy = _edited(
        tmp_path,
        "  repeated string exclude = 12;\n}",
        "  repeated string exclude = 12;\n  string note = 99;\n}\n\nmessage PingRequest {}",
    )
    service = (copy / JOBS).read_text()
    watch = "  rpc WatchJob(WatchJobRequest) returns (stream WatchJobResponse);\n"
    (copy / JOBS).write_text(
        service.replace(watch, watch + "  rpc Ping(PingRequest) returns (PingRequest);\n")
    )
    result = _breaking(copy)
    assert result.returncode == 0, result.stdout + result.stderr
