"""gRPC status codes and failed jobs map onto the client's error tree and the CLI's exit status."""

from __future__ import annotations

import socket

import pytest

import mlgate_client
from mlgate.failures import CODES
from mlgate_client import MLGateClient, errors
from mlgate_client.cli import exit_code


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("INVALID_ARGUMENT", errors.InvalidArgument),
        ("NOT_FOUND", errors.NotFound),
        ("ALREADY_EXISTS", errors.AlreadyExists),
        ("FAILED_PRECONDITION", errors.FailedPrecondition),
        ("RESOURCE_EXHAUSTED", errors.ResourceExhausted),
        ("DEADLINE_EXCEEDED", errors.DeadlineExceeded),
        ("UNAVAILABLE", errors.Unavailable),
        ("DATA_LOSS", errors.DataLoss),
        ("INTERNAL", errors.Internal),
        ("UNKNOWN", errors.Internal),
        ("UNAUTHENTICATED", errors.Unauthenticated),
        ("PERMISSION_DENIED", errors.PermissionDenied),
        ("ABORTED", errors.MLGateError),
    ],
)
def test_each_status_code_has_its_class(code, cls) -> None:
    error = errors.error_for_code(code, "something is off")
    assert type(error) is cls
    assert isinstance(error, errors.MLGateError)
    assert error.code == code
    assert error.message == "something is off"
    assert str(error) == f"{code}: something is off"


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_code_the_server_tells_a_fault_with_has_its_own_class(code: str) -> None:
    # mlgate.failures is the server's one error mapping: the client stands apart from it, so
    # this test holds the two tables together.
    assert type(errors.error_for_code(code, "something is off")) is not errors.MLGateError


def test_invalid_argument_names_the_field_from_the_message() -> None:
    error = errors.error_for_code("INVALID_ARGUMENT", "params.max_depth: must be positive")
    assert isinstance(error, errors.InvalidArgument)
    assert error.field == "params.max_depth"
    assert errors.error_for_code("INVALID_ARGUMENT", "no field here").field == ""  # type: ignore[attr-defined]


def test_a_server_side_unavailable_is_not_mistaken_for_no_server() -> None:
    served = errors.error_for_code(
        "UNAVAILABLE", "the job broker is unreachable; try again shortly"
    )
    assert type(served) is errors.Unavailable
    refused = errors.error_for_code(
        "UNAVAILABLE", "failed to connect to all addresses; last error: Connection refused"
    )
    assert type(refused) is errors.ServerUnreachable
    assert isinstance(refused, errors.Unavailable)


def test_job_errors_carry_the_job_and_its_code() -> None:
    failed = errors.JobFailed("needs two classes", "FAILED_PRECONDITION", "job_1")
    assert (failed.code, failed.message, failed.job_id) == (
        "FAILED_PRECONDITION",
        "needs two classes",
        "job_1",
    )
    cancelled = errors.JobCancelled("cancelled by request", "job_2")
    assert (cancelled.code, cancelled.job_id) == ("CANCELLED", "job_2")
    assert isinstance(failed, errors.JobError) and isinstance(cancelled, errors.JobError)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidArgument("x: bad", "INVALID_ARGUMENT"), 2),
        (errors.JobFailed("bad params", "INVALID_ARGUMENT", "job_1"), 2),
        (errors.Unavailable("broker down", "UNAVAILABLE"), 3),
        (errors.ServerUnreachable("refused", "UNAVAILABLE"), 3),
        (errors.NotFound("no such model", "NOT_FOUND"), 1),
        (errors.JobFailed("one class", "FAILED_PRECONDITION", "job_1"), 1),
        (errors.JobCancelled("cancelled", "job_1"), 1),
        (errors.Internal("boom", "INTERNAL"), 1),
    ],
)
def test_exit_status_follows_the_code(error, status) -> None:
    assert exit_code(error) == status


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_calling_an_address_where_nothing_listens_raises_server_unreachable() -> None:
    with (
        MLGateClient(f"127.0.0.1:{_closed_port()}", timeout=10) as client,
        pytest.raises(errors.ServerUnreachable) as caught,
    ):
        client.get_job("job_" + "0" * 32)
    assert caught.value.code == "UNAVAILABLE"


def test_the_package_exports_what_it_declares() -> None:
    public = {name for name in vars(mlgate_client) if name[0].isupper()}
    assert set(mlgate_client.__all__) == public
