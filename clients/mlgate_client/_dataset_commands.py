"""What ``mlgate datasets download`` does."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlgate_client._commands import out
from mlgate_client._format import to_json
from mlgate_client.client import MLGateClient

__all__ = ["cmd_datasets_download"]


def cmd_datasets_download(args: argparse.Namespace, client: MLGateClient) -> int:
    """The file goes to FILE under a temporary name, renamed only once its sha256 checked out,
    so FILE is the whole dataset or is left as it was."""
    target = Path(args.output)
    dataset = client.download_dataset(args.dataset_id, target)
    if args.json:
        out(to_json({"dataset": dataset, "file": str(target)}))
    else:
        size = target.stat().st_size
        out(
            f"{dataset.id} downloaded to {target}: {size} bytes, {dataset.format}, "
            f"{dataset.rows} rows, sha256 {dataset.sha256}"
        )
    return 0
