"""Before ``ExportModel`` hands a model out, its bytes pass the checks a worker runs on load.

The gateway never imports scikit-learn, so the check runs in a child process
(``python -m workers.formats.verify``): a crafted artifact that would crash whoever loads it
crashes that child, never the gateway, and is refused. Verdicts are kept by the artifact's
digest, so a model is checked once per gateway, not once per export.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import BinaryIO

from mlgate.errors import from_status
from mlgate.v1 import models_pb2

__all__ = ["ExportCheck"]

_TIMEOUT = 120.0
_KEEP = 4096


class ExportCheck:
    """Checks artifacts out of process, remembering each digest's verdict."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._verdicts: dict[str, tuple[str, str]] = {}

    async def check(self, model: models_pb2.Model, form: str, spool: BinaryIO) -> None:
        """Raise what a worker would answer loading the spooled artifact; return if it is sound."""
        key = f"{model.sha256}:{form}"
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = await self._run(model, form, spool)
            if len(self._verdicts) >= _KEEP:
                self._verdicts.pop(next(iter(self._verdicts)))
            self._verdicts[key] = verdict
        code, message = verdict
        if code != "OK":
            raise from_status(code, message)

    async def _run(self, model: models_pb2.Model, form: str, spool: BinaryIO) -> tuple[str, str]:
        request = {
            "model_id": model.id,
            "format": form,
            "features": [f.name for f in model.features],
            "max_bytes": self._max_bytes,
        }
        spool.seek(0)
        data = await asyncio.to_thread(spool.read)
        spool.seek(0)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "workers.formats.verify",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            out, _ = await asyncio.wait_for(
                child.communicate(json.dumps(request).encode() + b"\n" + data), _TIMEOUT
            )
        except TimeoutError:
            child.kill()
            await child.wait()
            out = b""
        try:
            answer = json.loads(out.decode().strip().splitlines()[-1])
            return str(answer["code"]), str(answer.get("message", ""))
        except (ValueError, KeyError, IndexError):
            # The child died or said nothing: what the artifact did to it is reason enough.
            return "DATA_LOSS", f"model {model.id}'s artifact failed its checks; it is not exported"
