"""`make` is the way in: alone it lists every target, and `make run` says where it listens and
the one command to try next, which works as printed."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
from pathlib import Path

from tests.support.fresh import free_port

ROOT = Path(__file__).resolve().parents[2]


def _targets() -> list[str]:
    phony = re.search(r"^\.PHONY:(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert phony, "the Makefile declares its targets in .PHONY"
    return phony.group(1).split()


def test_make_alone_lists_every_target_with_what_it_does() -> None:
    done = subprocess.run(
        ["make", "--no-print-directory"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split(maxsplit=2) for line in done.stdout.splitlines()]
    assert all(len(row) == 3 and row[0] == "make" for row in rows), done.stdout
    assert sorted(row[1] for row in rows) == sorted(_targets())
    assert {"bench", "lint", "typecheck", "gen", "services", "test-fast", "clean"} <= {
        row[1] for row in rows
    }


def test_make_run_prints_where_it_listens_and_a_command_that_works(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "make-run.log"
    with log.open("w") as errors:
        make = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"PORT={port}", f"DATA_DIR={tmp_path / 'd'}"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            start_new_session=True,  # make and the server it runs, stopped together
        )
    try:
        assert make.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("listening on "):
            line = make.stdout.readline()
            assert line, f"make run ended early: {lines}\n{log.read_text()}"
            lines.append(line)
        step = re.fullmatch(
            rf"listening on localhost:{port}; try it from a second terminal: (.+)\n", lines[-1]
        )
        assert step, lines
        command = shlex.split(step.group(1))
        assert command[1:] == [
            "--address",
            f"localhost:{port}",
            "train",
            "diabetes",
            "--target",
            "target",
        ]
        tried = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert tried.returncode == 0, tried.stderr
        assert re.search(r"^model: +mdl_[0-9a-f]{32}$", tried.stdout, re.M), tried.stdout
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(timeout=60)


def test_make_run_on_a_taken_port_says_how_to_choose_another_in_make_s_terms(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            ["make", "--no-print-directory", "run", f"PORT={port}", f"DATA_DIR={tmp_path / 'd'}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert (
        f"make run: port {port} is in use; stop what listens there, or choose another port: "
        f"make run PORT={port + 1}"
    ) in said, said
    assert "--port" not in said
