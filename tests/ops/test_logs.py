"""Logs: the level and format come from the environment; JSON lines parse and name the job."""

from __future__ import annotations

import json
import logging

import pytest

from mlgate.logs import configure_logging, job_context


@pytest.fixture
def restore_root():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_logs_are_one_object_per_line_with_the_job_id(restore_root, capsys) -> None:
    configure_logging({"MLGATE_LOG_FORMAT": "json", "MLGATE_LOG_LEVEL": "debug"})
    log = logging.getLogger("mlgate.test")
    with job_context("job_0123456789abcdef"):
        log.info("job ended", extra={"outcome": "succeeded", "attempt": 1, "duration_s": 0.25})
    log.debug("outside\nwith a newline")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "job ended"
    assert first["job_id"] == "job_0123456789abcdef"
    assert (first["outcome"], first["attempt"], first["duration_s"]) == ("succeeded", 1, 0.25)
    assert {"time", "level", "logger"} <= first.keys() and first["level"] == "INFO"
    assert "job_id" not in second and second["message"] == "outside\nwith a newline"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MLGATE_LOG_LEVEL": "loud"}, "MLGATE_LOG_LEVEL"),
        ({"MLGATE_LOG_FORMAT": "xml"}, "MLGATE_LOG_FORMAT"),
    ],
)
def test_a_bad_log_setting_is_an_error_naming_the_variable(restore_root, env, variable) -> None:
    with pytest.raises(ValueError, match=variable):
        configure_logging(env)
