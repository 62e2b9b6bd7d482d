"""``mlgate models drift NAME[/VERSION|@ALIAS]``: each feature's population stability index
between the inputs the answering gateway served the version lately and its training data,
flagged at 0.1 (moderate) and 0.25 (major)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlgate_client._commands import out
from mlgate_client._drift_calls import ModelDrift
from mlgate_client._format import to_json

if TYPE_CHECKING:
    from mlgate_client.client import MLGateClient

__all__ = ["add_drift_command", "cmd_models_drift", "drift_text"]

_FLAGS = {"moderate": "!", "major": "!!"}


def drift_text(found: ModelDrift) -> str:
    """What ``mlgate models drift`` prints."""
    named = f"{found.name}/{found.version}" if found.name else found.model_id
    lines = [
        f"{named} ({found.model_id}): {found.window_rows:,} rows in the window, "
        f"{found.rows_seen:,} served since the gateway started"
    ]
    if not found.has_reference:
        lines.append("no reference: the model was trained before mlgate recorded its inputs")
    width = max([len("FEATURE"), *(len(f.feature) for f in found.features)])
    lines.append(f"{'FEATURE':<{width}}  {'PSI':>7}  LEVEL")
    for feature in found.features:
        psi = f"{feature.psi:7.3f}" if feature.psi is not None else f"{'-':>7}"
        flag = _FLAGS.get(feature.level, "")
        lines.append(
            f"{feature.feature:<{width}}  {psi}  {feature.level}{' ' + flag if flag else ''}"
        )
    return "\n".join(lines)


def cmd_models_drift(args: argparse.Namespace, client: MLGateClient) -> int:
    found = client.model_drift(args.model)
    out(to_json(found) if args.json else drift_text(found))
    return 0


def add_drift_command(models_commands: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    drift = add(
        models_commands,
        "drift",
        cmd_models_drift,
        "compare a model's recent inputs with its training data (PSI per feature)",
    )
    drift.add_argument("model", metavar="NAME[/VERSION|@ALIAS]")
