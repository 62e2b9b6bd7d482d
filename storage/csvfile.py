"""Uploaded CSV files: the delimiter detected or given, and every row's shape checked.

pandas reads what it is given generously: a duplicate header becomes ``a.1``, a short row is padded
with missing values, a long one turns a column into an index, and a semicolon-separated file is one
column. ``parse`` refuses such files naming the line at fault and describes the rest (columns,
dtypes, rows) in one streaming pass with the csv module: the gateway never loads pandas. ``read``,
for the workers, is the one place the pandas options live, so an upload and a later load agree.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from mlgate.errors import InvalidField
from mlgate_client.filetypes import HEAD_BYTES, not_csv
from storage.csv_dtypes import ColumnDtype

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DELIMITERS", "Parsed", "parse", "read"]

#: The delimiters mlgate reads, by the name its messages use.
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_SAMPLE_BYTES = 64 * 1024
_MAX_HEADER_BYTES = 16 * 1024 * 1024
# The csv module refuses a field over 128 KiB by default, and while the delimiter is detected a
# whole header row is one field under each delimiter it does not use: fields up to the header's
# own bound are read, so any header mlgate takes (and a wide one, of 16,000+ columns) fits.
csv.field_size_limit(max(csv.field_size_limit(), _MAX_HEADER_BYTES))
_LINE_ENDS = ("\n", "\r")


def _name(delimiter: str) -> str:
    return f"{DELIMITERS[delimiter]} ({delimiter!r})"


def _records(text: str, delimiter: str) -> list[list[str]]:
    # newline="": as the full read takes lines, a bare CR (old Mac files) ending one too.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
    try:
        return [row for row in reader if not _blank(row)]
    except csv.Error as exc:
        raise _not_csv(exc, reader.line_num) from None


def _not_csv(exc: csv.Error, line: int, how: str = "") -> InvalidField:
    """What the csv module found, said for people, with the line it was on."""
    found = str(exc)
    if "field limit" in found:
        return InvalidField(
            "chunk",
            f"line {line} has a field over {_MAX_HEADER_BYTES // 2**20} MiB, the longest a CSV "
            "field may be",
        )
    return InvalidField("chunk", f"line {line} is not valid CSV: {found}{how}")


def _first_line_end(raw: bytes | bytearray) -> int:
    ends = [i for i in (raw.find(b"\n"), raw.find(b"\r")) if i >= 0]
    return min(ends) if ends else -1


def _blank(row: list[str]) -> bool:
    return not row or (len(row) == 1 and not row[0].strip())


def _sample(source: BinaryIO) -> str:
    start = source.tell()
    raw = bytearray(source.read(_SAMPLE_BYTES))
    # A header row longer than the sample (thousands of columns): read on to its end, so the
    # sample holds at least one whole line to judge.
    while (
        _first_line_end(raw) < 0
        and len(raw) <= _MAX_HEADER_BYTES
        and (more := source.read(_SAMPLE_BYTES))
    ):
        raw += more
    complete = not source.read(1)
    source.seek(start)
    end = _first_line_end(raw)
    if (end if end >= 0 else len(raw)) > _MAX_HEADER_BYTES:
        raise InvalidField(
            "chunk",
            f"the header row is longer than {_MAX_HEADER_BYTES // 2**20} MiB (no line ends in "
            f"the first {_MAX_HEADER_BYTES // 2**20} MiB), the longest mlgate reads; is this a "
            "CSV file with one header row?",
        )
    text = codecs.getincrementaldecoder("utf-8-sig")(errors="replace").decode(bytes(raw))
    if "\0" in text:
        raise _binary(1 + text.count("\n", 0, text.index("\0")))
    # A sample cut mid-file ends in a partial line: judge whole lines only.
    return text if complete else text[: max(text.rfind(end) for end in _LINE_ENDS) + 1]


def detect(sample: str) -> str | None:
    """The delimiter under which the sample's header has the most columns (2+) and every sampled
    row has as many; None if none does."""
    best: tuple[int, str] | None = None
    for delimiter in DELIMITERS:
        records = _records(sample, delimiter)
        if not records or len(records[0]) < 2:
            continue
        consistent = all(len(row) == len(records[0]) for row in records)
        if consistent and (best is None or len(records[0]) > best[0]):
            best = (len(records[0]), delimiter)
    return None if best is None else best[1]


def _widest(sample: str) -> str:
    """The delimiter that splits the header most: what the file appears to use."""
    counts = {d: len(r[0]) if (r := _records(sample, d)) else 0 for d in DELIMITERS}
    return max(DELIMITERS, key=lambda d: counts[d])


def _choose(sample: str, given: str) -> str:
    if given:
        if given not in DELIMITERS:
            raise InvalidField(
                "delimiter", f"must be one of {', '.join(map(_name, DELIMITERS))}, not {given!r}"
            )
        header = _records(sample, given)[:1]
        if header and len(header[0]) < 2:
            seen = detect(sample)
            hint = f"; the file looks {_name(seen)}-separated" if seen else ""
            raise InvalidField("delimiter", f"splits the header row into one column{hint}")
        return given
    found = detect(sample)
    if found is not None:
        return found
    seen = _widest(sample)
    header = _records(sample, seen)[:1]
    if not header or len(header[0]) < 2:
        raise InvalidField(
            "chunk",
            "the header row has one column: no comma, semicolon, tab or pipe separates it. A "
            "dataset needs 2+ columns; if the file uses another delimiter, convert it",
        )
    return seen  # its rows disagree with its header: the full check names the line


@dataclass(frozen=True)
class Parsed:
    """A checked upload: its columns with their dtypes, its data rows, its delimiter."""

    columns: list[tuple[str, str]]
    rows: int
    delimiter: str


def _text_lines(text: Iterable[str]) -> Iterator[str]:
    """The lines of ``text``; a NUL byte is refused (the csv module takes it as text)."""
    for number, line in enumerate(text, 1):
        if "\0" in line:
            raise _binary(number)
        yield line


def _binary(line: int) -> InvalidField:
    return InvalidField("chunk", f"line {line} holds a NUL byte: this is binary data, not CSV")


def _scan(source: BinaryIO, delimiter: str) -> tuple[list[tuple[str, str]], int]:
    start = source.tell()
    text = io.TextIOWrapper(source, encoding="utf-8-sig", newline="")
    how = f"read as {_name(delimiter)}-separated; set delimiter if that is wrong"
    try:
        reader = csv.reader(_text_lines(text), delimiter=delimiter, skipinitialspace=True)
        header = next((row for row in reader if not _blank(row)), None)
        if header is None:
            raise InvalidField("chunk", "the upload has no header row")
        names: dict[str, int] = {}
        for i, name in enumerate(header, 1):
            if not name.strip():
                raise InvalidField("chunk", f"column {i} of the header row has no name")
            if name in names:
                raise InvalidField(
                    "chunk", f"column name {name!r} appears twice (columns {names[name]} and {i})"
                )
            names[name] = i
        columns = [ColumnDtype() for _ in header]
        rows = 0
        for row in reader:
            if _blank(row):
                continue
            if len(row) != len(header):
                raise InvalidField(
                    "chunk",
                    f"line {reader.line_num} has {len(row)} fields but the header row has "
                    f"{len(header)} ({how})",
                )
            for column, raw in zip(columns, row, strict=True):
                column.see(raw)
            rows += 1
    except UnicodeDecodeError as exc:
        raise InvalidField("chunk", f"the file is not UTF-8 text: {exc.reason}") from None
    except csv.Error as exc:
        raise _not_csv(exc, reader.line_num, f" ({how})") from None
    finally:
        text.detach()
        source.seek(start)
    return [(name, column.dtype()) for name, column in zip(header, columns, strict=True)], rows


def read(source: BinaryIO, delimiter: str) -> pd.DataFrame:
    """The CSV as a DataFrame, read as every upload is: ``true``/``false`` (any case) in a column
    make it boolean, and spaces after a delimiter are not part of the value."""
    import pandas as pd  # the workers' import: the gateway describes files, it never loads them

    return pd.read_csv(source, sep=delimiter, skipinitialspace=True)


def parse(source: BinaryIO, delimiter: str = "") -> Parsed:
    """The checked file's description, read with ``delimiter`` or, when empty, the one detected.
    Raises InvalidField naming what is wrong and where."""
    start = source.tell()
    found = not_csv(source.read(HEAD_BYTES))
    source.seek(start)
    if found is not None:
        raise InvalidField("chunk", found)
    sample = _sample(source)
    if not sample.strip():
        raise InvalidField("chunk", "the upload is empty; send a CSV with a header row")
    chosen = _choose(sample, delimiter)
    columns, rows = _scan(source, chosen)
    if rows == 0:
        raise InvalidField("chunk", "a dataset needs a header row and data rows")
    return Parsed(columns, rows, chosen)
