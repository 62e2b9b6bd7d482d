"""``make bench``'s training part, in a tiny configuration: it runs and reports every system."""

from __future__ import annotations

import pytest

from bench import run


def test_training_bench_reports_mlgate_beside_celery(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--only", "training", "--brokers", "redis", "--train-jobs", "3"]
    assert run.main([*argv, "--train-rounds", "1", "--train-alone", "2"]) == 0
    table = capsys.readouterr().out
    assert "fit-bound limit" in table
    rows = {line.split(" | ")[0].lstrip("| ") for line in table.splitlines() if line[:2] == "| "}
    assert {
        "Celery task, prefork 2 processes, Redis",
        "mlgate, gateway + 2 workers, redis",
        "mlgate, gateway + 2 workers, redis (2 jobs)",
    } <= rows
