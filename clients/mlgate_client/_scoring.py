"""``mlgate predict MODEL --csv FILE``: batch scoring of a file of any size through ModelInfer.

The file is read in chunks (pandas' C parser), each chunk sent as one tensor per feature in raw
form, several chunks in flight at once, and the predictions written in the file's order as they
come back: memory stays bounded by the chunk size, whatever the file's.

Inputs follow the rule every path follows (docs/prediction.md): the file's other columns are
ignored (and said so once), a blank cell is a blank (NaN for a number, an empty string for text,
a boolean sent as text so it can be blank), and errors name the file's lines. ``keep`` columns
are copied into the output before the predictions, and the models that answered are named.
"""

from __future__ import annotations

import csv
import os
import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlgate_client._format import Progress
from mlgate_client._inference_calls import Inferred, Tensor, encode_bytes
from mlgate_client._input import UsageError
from mlgate_client.errors import MLGateError
from mlgate_client.filetypes import HEAD_BYTES, not_csv

if TYPE_CHECKING:
    from mlgate_client.client import MLGateClient

__all__ = ["Scored", "score_csv"]

#: Chunks sent before the first answer is awaited: enough to keep the workers busy.
_IN_FLIGHT = 4


@dataclass(frozen=True)
class Scored:
    """What ``score_csv`` did: the rows it scored and the models that answered them."""

    rows: int
    #: ``diabetes-rf/2 (mdl_…)``; with the lines of each when an alias moved mid-file.
    answered: str


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""  # a blank cell reads as NaN


def _boolean_text(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return _text(value)


def _columns(
    chunk: pd.DataFrame, inputs: list[Tensor], first_line: int
) -> dict[str, tuple[str, bytes]]:
    """The chunk's feature columns as raw tensor contents, blanks as the rule says."""
    columns: dict[str, tuple[str, bytes]] = {}
    for tensor in inputs:
        if tensor.name not in chunk:
            continue  # not in the file: blank in every row, if the model takes blanks
        column = chunk[tensor.name]
        try:
            if tensor.datatype == "BYTES":
                texts = [_text(value) for value in column.tolist()]
                columns[tensor.name] = ("BYTES", encode_bytes(texts))
            elif tensor.datatype == "BOOL" and column.dtype != np.bool_:
                # With blanks pandas reads booleans as objects; text carries the blanks.
                texts = [_boolean_text(value) for value in column.tolist()]
                columns[tensor.name] = ("BYTES", encode_bytes(texts))
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


def _kept(chunk: pd.DataFrame, keep: list[str]) -> list[list[str]]:
    """The kept columns' cells, row by row: as the file has them (a kept feature as read)."""
    columns = [[_cell(value) for value in chunk[name].tolist()] for name in keep]
    return [list(row) for row in zip(*columns, strict=True)] if keep else [[]] * len(chunk)


def _cell(value: Any) -> str:
    if isinstance(value, float) and np.isnan(value):
        return ""
    return str(value)


def _rows_out(answer: Inferred, kept: list[list[str]]) -> Iterator[list[Any]]:
    if answer.probabilities is None:
        for cells, value in zip(kept, answer.predictions, strict=True):
            yield [*cells, value]
    else:
        probabilities = answer.probabilities.tolist()
        for cells, value, proba in zip(kept, answer.predictions, probabilities, strict=True):
            yield [*cells, value, *proba]


def _header(path: str, delimiter: str) -> list[str]:
    try:
        with open(path, "rb") as handle:
            found = not_csv(handle.read(HEAD_BYTES))
            if found is not None:
                raise UsageError(f"{path}: {found}")
            handle.seek(0)
            return [str(name) for name in pd.read_csv(handle, nrows=0, sep=delimiter).columns]
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not CSV (UTF-8 text) as expected: {exc}") from None


class _Answered:
    """Which model answered which lines, named once scoring is done."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, int, int]] = []  # model id, first line, last line

    def add(self, model_id: str, first: int, last: int) -> None:
        if self.spans and self.spans[-1][0] == model_id:
            self.spans[-1] = (model_id, self.spans[-1][1], last)
        else:
            self.spans.append((model_id, first, last))

    def named(self, client: MLGateClient) -> str:
        names: dict[str, str] = {}
        for model_id, _first, _last in self.spans:
            if model_id not in names:
                try:
                    model = client.get_model(model_id)
                    names[model_id] = f"{model.ref} ({model_id})" if model.name else model_id
                except MLGateError:
                    names[model_id] = model_id  # deleted meanwhile: its id is all there is
        if len(names) <= 1:
            return next(iter(names.values()), "no model")
        return ", ".join(f"{names[m]} for lines {a}-{b}" for m, a, b in self.spans)


def score_csv(
    client: MLGateClient,
    model: str,
    path: str,
    out: IO[str],
    *,
    chunk_rows: int,
    delimiter: str = ",",
    keep: list[str] | None = None,
    routing_key: str = "",
) -> Scored:
    """Write one prediction per row of the CSV at ``path`` to ``out``, after the ``keep``
    columns of that row; the rows scored and the models that answered. Through a weighted
    alias, every chunk goes to the version ``routing_key`` maps to (or each to one drawn)."""
    keep = keep or []
    inputs, outputs = client.model_inputs(model)
    header = _header(path, delimiter)
    unknown = [name for name in keep if name not in header]
    if unknown:
        raise UsageError(f"{path} has no column {unknown[0]!r} to --keep; its columns: {header}")
    names = {t.name for t in inputs}
    ignored = sorted(name for name in header if name not in names and name not in keep)
    if ignored:
        print(
            f"warning: ignored {', '.join(ignored)}: not features of this model (its features: "
            f"{', '.join(t.name for t in inputs)})",
            file=sys.stderr,
        )
    # Text as text; a kept column that is not a feature as written, whatever it holds.
    dtypes = {t.name: str for t in inputs if t.datatype == "BYTES"}
    dtypes.update({name: str for name in keep if name not in names})
    wanted = [name for name in header if name in names or name in keep]
    handle = open(path, "rb")  # noqa: SIM115 (closed below, after the reader)
    size = os.fstat(handle.fileno()).st_size or 1
    progress = Progress(sys.stderr)
    writer = csv.writer(out, lineterminator="\n")
    pending: deque[tuple[int, list[list[str]], Future[Inferred]]] = deque()
    answered = _Answered()
    warned: set[str] = set()
    scored = 0
    header_written = False

    def drain(leave: int) -> None:
        nonlocal scored, header_written
        while len(pending) > leave:
            first_line, kept, future = pending.popleft()
            lines = f"lines {first_line}-{first_line + len(kept) - 1}"
            try:
                answer = future.result()
            except MLGateError as exc:
                exc.message = f"{lines}: {exc.message}"
                raise
            for warning in answer.warnings:
                if warning not in warned:
                    warned.add(warning)
                    print(f"warning: {lines}: {warning}", file=sys.stderr)
            if not header_written:
                writer.writerow([*keep, "predict", *(f"proba_{c}" for c in answer.classes)])
                header_written = True
            writer.writerows(_rows_out(answer, kept))
            answered.add(answer.model_id, first_line, first_line + len(kept) - 1)
            scored += len(kept)
            progress.draw(handle.tell() / size, f"{scored:,} rows")

    try:
        reader = pd.read_csv(
            handle, chunksize=chunk_rows, dtype=dtypes, sep=delimiter, usecols=wanted
        )
        line = 2  # the header is line 1
        for chunk in reader:
            columns = _columns(chunk, inputs, line)
            future = client.infer_columns(
                model, columns, len(chunk), first_line=line, routing_key=routing_key
            )
            pending.append((line, _kept(chunk, keep), future))
            line += len(chunk)
            drain(_IN_FLIGHT - 1)
        drain(0)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not CSV (UTF-8 text) as expected: {exc}") from None
    finally:
        progress.clear()
        handle.close()
        for _line, _kept_cells, future in pending:
            future.cancel()
    if not header_written:
        writer.writerow([*keep, "predict"] + (["proba"] if len(outputs) > 1 else []))
    return Scored(scored, answered.named(client))
