"""Checking an artifact out of process, for a process that must not load scikit-learn itself.

The gateway never imports scikit-learn, yet before ``ExportModel`` hands a model out it should
know that the bytes pass the checks a worker would run on them: a crafted model exported verbatim
would crash whoever loads it without those checks. ``python -m workers.formats.verify`` reads one
line of JSON (``model_id``, ``format``, ``features``, ``max_bytes``) and then the artifact's bytes
on its standard input, loads them exactly as a worker does (``workers.formats.decode``), and
writes one line of JSON: ``{"code": "OK"}``, or the status code and message a worker would have
answered (``mlgate.failures``: DATA_LOSS for a malformed artifact, RESOURCE_EXHAUSTED past the
size limit). Whatever the artifact does to this process, the caller's survives; a caller should
treat a child that died or answered nothing as DATA_LOSS.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from mlgate.failures import Backends, public
from storage.models import Encoded
from workers.formats import decode

__all__ = ["main", "verdict"]

_NO_SERVICES = Backends(broker="", job_store="", object_store="")


def verdict(request: dict[str, Any], data: bytes) -> dict[str, str]:
    """``{"code": "OK"}``, or the code and message a worker would answer loading ``data``."""
    try:
        decode(
            Encoded(str(request["format"]), data),
            str(request["model_id"]),
            [str(name) for name in request["features"]],
            int(request["max_bytes"]),
        )
    except Exception as exc:
        failure = public(exc, _NO_SERVICES, f"verifying model {request.get('model_id')}")
        return {"code": failure.code, "message": failure.message}
    return {"code": "OK"}


def main() -> int:
    """Verify the artifact on standard input; the verdict on standard output."""
    request = json.loads(sys.stdin.buffer.readline())
    answer = verdict(request, sys.stdin.buffer.read())
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
