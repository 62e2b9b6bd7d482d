"""``mlgate models compare NAME@ALIAS``: an alias's shadow version against the versions that
answered, as the gateway that answers has seen it since it started."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlgate_client._commands import out
from mlgate_client._format import to_json
from mlgate_client._input import UsageError
from mlgate_client._shadow_calls import Quantiles, ShadowComparison

if TYPE_CHECKING:
    from mlgate_client.client import MLGateClient

__all__ = ["add_compare_command", "cmd_models_compare", "comparison_text"]


def _seconds(found: Quantiles) -> str:
    return f"p50 {found.p50 * 1000:.2f} ms, p90 {found.p90 * 1000:.2f} ms, p99 {found.p99 * 1000:.2f} ms"


def comparison_text(found: ShadowComparison) -> str:
    """What ``mlgate models compare`` prints."""
    lines = [
        f"{found.name}@{found.alias}: shadow version {found.shadow_version}"
        f"{f' ({found.task})' if found.task else ''}, as this gateway has seen it since it started",
        f"mirrored      {found.mirrored}",
        f"dropped       {found.dropped}",
        f"shadow errors {found.shadow_errors}",
        f"rows compared {found.rows}",
    ]
    if found.task == "classification":
        lines.append(f"agreement     {found.agreement:.2%}")
    elif found.task == "regression":
        diff = found.abs_diff
        lines.append(
            f"abs diff      mean {found.mean_abs_diff:.4g}, p50 {diff.p50:.4g}, "
            f"p90 {diff.p90:.4g}, p99 {diff.p99:.4g}"
        )
    lines.append(f"primary       {_seconds(found.primary_latency)}")
    lines.append(f"shadow        {_seconds(found.shadow_latency)}")
    return "\n".join(lines)


def cmd_models_compare(args: argparse.Namespace, client: MLGateClient) -> int:
    name, at, alias = args.reference.partition("@")
    if not at or not name or not alias:
        raise UsageError(f"{args.reference!r}: write NAME@ALIAS (an alias with a shadow version)")
    found = client.shadow_comparison(name, alias)
    out(to_json(found) if args.json else comparison_text(found))
    return 0


def add_compare_command(models_commands: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    compare = add(
        models_commands,
        "compare",
        cmd_models_compare,
        "compare NAME@ALIAS's shadow version with the versions that answered",
    )
    compare.add_argument("reference", metavar="NAME@ALIAS")
