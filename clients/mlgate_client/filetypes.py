"""Files that are not CSV, told by their first bytes: what a person most likely sent instead.

The gateway's upload check (``storage.csvfile``) and the CLI's ``predict --csv`` both read CSV
only; each names a known binary format when a file starts with its signature, rather than
reporting the bytes it choked on.
"""

from __future__ import annotations

__all__ = ["HEAD_BYTES", "SIGNATURES", "not_csv"]

#: Leading bytes of formats people send where CSV is expected, and what each is.
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PAR1", "a Parquet file (it starts with PAR1)"),
    (b"ARROW1", "an Arrow IPC (Feather) file (it starts with ARROW1)"),
    (b"ORC", "an ORC file (it starts with ORC)"),
    (b"PK\x03\x04", "a ZIP archive, or an Excel .xlsx workbook (it starts with PK)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Excel .xls workbook (an OLE2 file)"),
    (b"\x1f\x8b", "a gzip-compressed file (it starts with 1f 8b)"),
    (b"BZh", "a bzip2-compressed file (it starts with BZh)"),
    (b"\xfd7zXZ\x00", "an xz-compressed file"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"%PDF-", "a PDF document"),
)


#: How many leading bytes ``not_csv`` wants to see.
HEAD_BYTES = 512


def not_csv(head: bytes) -> str | None:
    """What the file whose first bytes are ``head`` (``HEAD_BYTES`` of them, or all it has) is,
    when a known binary format; None else. A signature that is text (PAR1, ORC) counts only
    beside bytes no text holds, so a CSV whose header starts "ORCID," stays a CSV."""
    binary = any(byte < 9 or 13 < byte < 32 for byte in head[:HEAD_BYTES])
    for signature, what in SIGNATURES:
        if head.startswith(signature) and (binary or not signature.isascii()):
            return f"this looks like {what}, not CSV: convert it to CSV (UTF-8 text) first"
    return None
