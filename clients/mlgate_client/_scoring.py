"""``mlgate predict MODEL --csv FILE``: batch scoring of a file of any size through ModelInfer.

The file is read in chunks (pandas' C parser), each chunk sent as one tensor per feature in raw
form, several chunks in flight at once, and the predictions written in the file's order as they
come back: memory stays bounded by the chunk size, whatever the file's.
"""

from __future__ import annotations

import csv
import os
import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlgate_client._format import Progress
from mlgate_client._inference_calls import Inferred, Tensor, encode_bytes
from mlgate_client._input import UsageError
from mlgate_client.errors import MLGateError

if TYPE_CHECKING:
    from mlgate_client.client import MLGateClient

__all__ = ["score_csv"]

#: Chunks sent before the first answer is awaited: enough to keep the workers busy.
_IN_FLIGHT = 4


def _columns(
    chunk: pd.DataFrame, inputs: list[Tensor], first_line: int
) -> dict[str, tuple[str, bytes]]:
    """The chunk's feature columns as raw tensor contents."""
    columns: dict[str, tuple[str, bytes]] = {}
    for tensor in inputs:
        column = chunk[tensor.name]
        try:
            if tensor.datatype == "BYTES":
                columns[tensor.name] = ("BYTES", encode_bytes(column.astype(str).tolist()))
            elif tensor.datatype == "BOOL":
                columns[tensor.name] = ("BOOL", column.to_numpy(dtype=np.bool_).tobytes())
            else:
                values = column.to_numpy(dtype=np.float64)
                columns[tensor.name] = ("FP64", values.astype("<f8", copy=False).tobytes())
        except (TypeError, ValueError) as exc:
            raise UsageError(
                f"column {tensor.name!r} in lines {first_line}-{first_line + len(chunk) - 1} "
                f"is not {tensor.datatype.lower()}: {exc}"
            ) from None
    return columns


def _rows_out(answer: Inferred) -> Iterator[list[Any]]:
    if answer.probabilities is None:
        for value in answer.predictions:
            yield [value]
    else:
        for value, proba in zip(answer.predictions, answer.probabilities.tolist(), strict=True):
            yield [value, *proba]


def score_csv(
    client: MLGateClient,
    model: str,
    path: str,
    out: IO[str],
    *,
    chunk_rows: int,
    delimiter: str = ",",
) -> int:
    """Write one prediction per row of the CSV at ``path`` to ``out``; the rows scored."""
    inputs, outputs = client.model_inputs(model)
    strings = {t.name: str for t in inputs if t.datatype == "BYTES"}
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below, after the reader)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    size = os.fstat(handle.fileno()).st_size or 1
    progress = Progress(sys.stderr)
    writer = csv.writer(out, lineterminator="\n")
    pending: deque[tuple[int, int, Future[Inferred]]] = deque()
    scored = 0
    header_written = False

    def drain(keep: int) -> None:
        nonlocal scored, header_written
        while len(pending) > keep:
            first_line, rows, future = pending.popleft()
            try:
                answer = future.result()
            except MLGateError as exc:
                exc.message = f"lines {first_line}-{first_line + rows - 1}: {exc.message}"
                raise
            if not header_written:
                header = ["predict"] + [f"proba_{c}" for c in answer.classes]
                writer.writerow(header)
                header_written = True
            writer.writerows(_rows_out(answer))
            scored += rows
            progress.draw(handle.tell() / size, f"{scored:,} rows")

    try:
        reader = pd.read_csv(handle, chunksize=chunk_rows, dtype=strings, sep=delimiter)
        line = 2  # the header is line 1
        for chunk in reader:
            missing = [t.name for t in inputs if t.name not in chunk.columns]
            if missing:
                raise UsageError(
                    f"{path} has no column {missing[0]!r}; the model's inputs are "
                    f"{', '.join(t.name for t in inputs)}"
                )
            columns = _columns(chunk, inputs, line)
            pending.append((line, len(chunk), client.infer_columns(model, columns, len(chunk))))
            line += len(chunk)
            drain(_IN_FLIGHT - 1)
        drain(0)
    except pd.errors.ParserError as exc:
        raise UsageError(f"{path} is not CSV as expected: {exc}") from None
    finally:
        progress.clear()
        handle.close()
        for _line, _rows, future in pending:
            future.cancel()
    if not header_written:
        writer.writerow(["predict"] + (["proba"] if len(outputs) > 1 else []))
    return scored
