"""The documentation, run as written.

The README and docs/*.md mark the fenced blocks a reader runs in order with
``<!-- walkthrough:NAME -->`` before the fence and ``<!-- /walkthrough -->`` after it. The blocks
of one NAME in one document run in one bash session, in document order: ``bash``/``sh`` blocks as
they are, ``python`` blocks through ``python -``. ``<!-- walkthrough:NAME background -->`` marks a
block a reader leaves running in a terminal of its own (``mlgate serve``): it runs in the
background, and the next block starts once it prints that it serves, as a reader would wait.
Whatever a walkthrough leaves running is stopped when it ends.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = [
    "DOCUMENTS",
    "ROOT",
    "Block",
    "Finished",
    "blocks",
    "environment",
    "run_walkthrough",
    "script",
]

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
# What a reader runs; other fences are output, synopses or configuration.
RUNNABLE = ("bash", "sh", "python")

_FENCE = re.compile(r"^```(?P<language>[\w-]*)\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)
_OPEN = re.compile(r"<!-- walkthrough:(?P<name>[\w-]+)(?P<background> background)? -->\s*\Z")
_CLOSE = re.compile(r"\s*<!-- /walkthrough -->")

# A background block is a second terminal: go on once it says it serves (or fail if it died).
_PRELUDE = r"""set -euo pipefail
trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT
__second_terminal() {
  local log=$1 pid=$2
  until grep -q ' on port ' "$log"; do
    if ! kill -0 "$pid" 2>/dev/null; then cat "$log" >&2; return 1; fi
    sleep 0.2
  done
}
"""


@dataclass(frozen=True)
class Block:
    """One fenced block of a document, and the walkthrough it belongs to, if any."""

    document: Path
    line: int
    language: str
    code: str
    walkthrough: str | None = None
    background: bool = False

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"

    @property
    def first_line(self) -> str:
        return self.code.splitlines()[0] if self.code else ""


def blocks(document: Path) -> list[Block]:
    """Every fenced block of ``document``; a walkthrough marker must be closed after its block."""
    text = document.read_text()
    found = []
    for fence in _FENCE.finditer(text):
        line = text.count("\n", 0, fence.start()) + 1
        opened = _OPEN.search(text, 0, fence.start())
        closed = _CLOSE.match(text, fence.end() + 1)
        if bool(opened) != bool(closed):
            pytest.fail(f"{document.name}:{line}: a walkthrough marker without its pair")
        found.append(
            Block(
                document,
                line,
                fence["language"],
                fence["code"],
                opened["name"] if opened else None,
                bool(opened and opened["background"]),
            )
        )
    return found


def script(document: Path, name: str, substitutions: Mapping[str, str] = {}) -> str:
    """The walkthrough ``name`` of ``document`` as one bash script; each ``substitutions`` key
    (a port, a path a test must keep private) is replaced in the documented code."""
    parts = [_PRELUDE]
    chosen = [block for block in blocks(document) if block.walkthrough == name]
    assert chosen, f"{document.name} has no {name} walkthrough"
    for number, block in enumerate(chosen):
        code = block.code
        for old, new in substitutions.items():
            code = code.replace(old, new)
        parts.append(f"# {block.where}\n")
        if block.language == "python":
            parts.append(f"python - <<'MLGATE_WALKTHROUGH'\n{code}MLGATE_WALKTHROUGH\n")
        elif block.background:
            log = f"second-terminal-{number}.log"
            parts.append(f"(\n{code}) > {log} 2>&1 &\n__second_terminal {log} $!\n")
        else:
            parts.append(code)
    return "".join(parts)


def environment(tmp: Path, **variables: str) -> dict[str, str]:
    """A reader's shell: this checkout's tools first on PATH, none of the caller's MLGATE_* or
    AWS_* settings, the default data directory (``$XDG_DATA_HOME/mlgate``) under ``tmp``, and
    patience with gateways that start slowly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLGATE_", "AWS_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["XDG_DATA_HOME"] = str(tmp / "xdg-data")
    # A gateway the walkthrough starts in the background may take longer than a reader's 30 s
    # to listen on the shared, busy machine that runs the tests.
    env["MLGATE_CONNECT_TIMEOUT"] = "180"
    env.update(variables)
    return env


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str


def run_walkthrough(
    source: str, cwd: Path, env: Mapping[str, str], timeout: float = 600
) -> Finished:
    """Run a script from ``script`` in ``cwd``; it fails the test unless it succeeds. Every
    process it started is gone when this returns."""
    out, err = cwd / "walkthrough.out", cwd / "walkthrough.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        # Files, not pipes: a server a block leaves running would hold a pipe open.
        process = subprocess.Popen(
            ["bash", "-c", source],
            cwd=cwd,
            env=dict(env),
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            _end_group(process)
    done = Finished(process.returncode, out.read_text(), err.read_text())
    assert done.returncode == 0, (
        f"walkthrough failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    )
    return done


def _end_group(process: subprocess.Popen[bytes]) -> None:
    """Stop the walkthrough's shell and anything it left behind: SIGTERM, then SIGKILL."""
    for sig, grace in ((signal.SIGTERM, 60.0), (signal.SIGKILL, 10.0)):
        if not _group_alive(process.pid):
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)  # processes of a group give no event to wait on
    process.wait()


def _group_alive(group: int) -> bool:
    """Whether any process of ``group`` still runs (zombies, which nobody may reap, do not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False
