"""What the model registry commands do: versions, aliases, metadata and exports."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from google.protobuf import json_format

from mlgate_client._commands import out
from mlgate_client._format import model_block, to_json, versions_table
from mlgate_client._input import UsageError
from mlgate_client.client import MLGateClient

__all__ = [
    "cmd_models_alias",
    "cmd_models_export",
    "cmd_models_update",
    "cmd_models_versions",
]


def cmd_models_versions(args: argparse.Namespace, client: MLGateClient) -> int:
    versions = client.model_versions(args.name)
    if args.json:
        out(to_json(versions))
    elif not versions:
        out(f"no versions of {args.name}")
    else:
        out(versions_table(versions))
    return 0


def cmd_models_alias(args: argparse.Namespace, client: MLGateClient) -> int:
    where = f"{args.name}@{args.alias}"
    if args.delete:
        if args.targets or args.shadow:
            raise UsageError("give VERSIONs to point the alias at, or --delete, not both")
        client.delete_alias(args.name, args.alias)
        out(to_json({"deleted": where}) if args.json else f"{where} deleted")
        return 0
    if not args.targets:
        if args.shadow:
            raise UsageError("give the VERSION (or VERSION:WEIGHT pairs) the alias points at")
        shown = client.get_model(where).through_alias
        if shown is None:  # a gateway from before weighted aliases
            raise UsageError(f"{where}: this gateway does not describe aliases")
        out(to_json(shown) if args.json else shown.describe())
        return 0
    version, routes = _alias_targets(args.targets)
    alias = client.set_alias(
        args.name, args.alias, version, routes=routes, shadow_version=args.shadow
    )
    if args.json:
        out(to_json(alias))
    else:
        moved = f" (was {alias.previous_version})" if alias.previous_version else ""
        out(f"{alias.describe()}{moved}")
    return 0


def _alias_targets(given: list[str]) -> tuple[int, list[tuple[int, int]]]:
    """One VERSION, or VERSION:WEIGHT pairs."""
    if len(given) == 1 and ":" not in given[0]:
        return _number(given[0], "VERSION"), []
    routes = []
    for text in given:
        version, colon, weight = text.partition(":")
        if not colon:
            raise UsageError(
                f"{text!r}: give one VERSION, or VERSION:WEIGHT for each version (3:90 4:10)"
            )
        routes.append((_number(version, "VERSION"), _number(weight, "WEIGHT")))
    return 0, routes


def _number(text: str, what: str) -> int:
    if not text.isdigit():
        raise UsageError(f"{what} must be a whole number, not {text!r}")
    return int(text)


def cmd_models_update(args: argparse.Namespace, client: MLGateClient) -> int:
    tags = dict(_tag(text) for text in args.tag or ())
    if args.description is None and not tags and not args.untag:
        raise UsageError("nothing to change: give --description, --tag or --untag")
    model = client.update_model(args.model, args.description, tags, args.untag or ())
    out(to_json(model) if args.json else model_block(model))
    return 0


def _tag(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise UsageError(f"--tag {text!r}: write KEY=VALUE")
    return key, value


def cmd_models_export(args: argparse.Namespace, client: MLGateClient) -> int:
    """The artifact goes to FILE and its manifest beside it (FILE.manifest.json); both are
    written under temporary names and renamed only once the digest has checked out."""
    target = Path(args.output)
    manifest_path = target.with_name(target.name + ".manifest.json")
    partial = target.with_name(f".{target.name}.part")
    try:
        with partial.open("wb") as file:
            model, fmt = client.export_model(args.model, file)
        manifest = {"format": fmt, "model": json_format.MessageToDict(model.proto)}
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    if args.json:
        out(to_json({"model": model, "file": str(target), "manifest": str(manifest_path)}))
    else:
        out(
            f"{model.ref} ({model.id}) exported to {target}: {model.size_bytes} bytes, "
            f"{fmt}, sha256 {model.sha256}; manifest {manifest_path}"
        )
    return 0
