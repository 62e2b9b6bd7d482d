"""The version of mlgate installed here, as ``mlgate status`` and the workers' heartbeats say it."""

from __future__ import annotations

from importlib import metadata

__all__ = ["installed_version"]


def installed_version() -> str:
    """The installed distribution's version, or "unknown" when run from a bare checkout."""
    try:
        return metadata.version("mlgate")
    except metadata.PackageNotFoundError:
        return "unknown"
