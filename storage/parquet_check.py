"""An uploaded Parquet file checked in a child process: ``python -m storage.parquet_check FD``.

Reading Parquet is pyarrow's C++ decoding of a file someone sent. The gateway describes uploads
(``DatasetCatalog.upload_file``), and a crafted file that crashed the decoder or made it allocate
without bound would take the gateway with it; in a child, it takes the child, and the upload is
refused. The child is also where pyarrow (and numpy) are imported, so the gateway never loads
them. It costs a process start (about 0.3 s) per Parquet upload.

The child reads the file through an inherited descriptor (no copy when the upload was spooled to
disk) and prints one JSON line: the description (``columns``, ``rows``) or the refusal
(``field``, ``message``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import BinaryIO

from mlgate.errors import InvalidField
from storage.csvfile import Parsed

__all__ = ["parse_in_child"]

# A 1 GiB upload (the largest taken) is read in well under this on a loaded machine.
_TIMEOUT = 900.0


def _descriptor(source: BinaryIO) -> int | None:
    """A descriptor of ``source``'s file, when it is one that starts where the upload does."""
    if source.tell() != 0:
        return None
    try:
        # A SpooledTemporaryFile moves to disk here.
        return source.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


def parse_in_child(source: BinaryIO) -> Parsed:
    """``storage.parquetfile.parse`` of ``source`` (from where it is; left there), run in a child
    process. InvalidField as ``parse`` raises it, or if the child died reading the file."""
    start = source.tell()
    try:
        descriptor = _descriptor(source)
        if descriptor is not None:
            return _run(descriptor)
        with tempfile.TemporaryFile() as copy:
            shutil.copyfileobj(source, copy, 1024 * 1024)
            copy.seek(0)
            return _run(copy.fileno())
    finally:
        source.seek(start)


def _run(descriptor: int) -> Parsed:
    try:
        done = subprocess.run(
            [sys.executable, "-m", "storage.parquet_check", str(descriptor)],
            pass_fds=(descriptor,),
            capture_output=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InvalidField(
            "chunk", f"the Parquet file was not read within {_TIMEOUT:.0f} s; split it"
        ) from None
    try:
        answer = json.loads(done.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        # What the file did to the reader is reason enough to refuse it.
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
        raise InvalidField(
            "chunk", f"the Parquet file could not be read: the reader stopped ({how})"
        ) from None
    if "field" in answer:
        raise InvalidField(str(answer["field"]), str(answer["message"]))
    columns = [(str(name), str(dtype)) for name, dtype in answer["columns"]]
    return Parsed(columns, int(answer["rows"]), "")


def main(argv: list[str]) -> int:
    from storage import parquetfile

    with os.fdopen(int(argv[0]), "rb", closefd=False) as source:
        source.seek(0)
        try:
            parsed = parquetfile.parse(source)
        except InvalidField as exc:
            message = exc.message.removeprefix(f"{exc.field}: ")
            print(json.dumps({"field": exc.field, "message": message}))
            return 0
    print(json.dumps({"columns": parsed.columns, "rows": parsed.rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
