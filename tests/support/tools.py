"""The repository's paths and the command-line tools the contract tests run (buf, grpcurl)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

__all__ = ["PROTOS", "ROOT", "tool"]

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
_BIN = Path(sys.executable).parent


def tool(name: str, package: str) -> str:
    """The path of ``name`` in this environment or on PATH; a test failure saying how to
    install ``package`` when it is missing."""
    path = _BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is missing: install it with `pip install {package}` (make install does)"
        )
    return found
