"""Process-wide logging, configured once by each entry point (never at import time)."""

from __future__ import annotations

import logging

__all__ = ["configure_logging"]


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
