"""Writing a dataset in parts from many jobs, committed at the end so it appears whole or not at all.

``DatasetCatalog.parts(dataset_id, run_id, form)`` names one run's parts, kept under
``dataset-parts/<dataset_id>/<run_id>/`` (outside ``datasets/``, so no listing sees them). Each
job writes its part by index (``write``; writing an index again replaces it, so a rerun shard is
harmless); one job then ``commit``s: the parts are joined in index order into one CSV or Parquet
file, checked and described exactly as an upload is (``DatasetCatalog.upload_file``: columns,
dtypes, rows, sha256, format) and stored with its record written last. Only then are the parts
deleted, so a commit that died midway can simply run again; a commit that finds no parts left and
the dataset there has already happened (``committed``).
"""

from __future__ import annotations

import io
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from mlgate.errors import FailedPrecondition, InvalidField
from mlgate.ids import check_dataset_id
from mlgate.v1 import datasets_pb2
from storage.base import check_key

if TYPE_CHECKING:
    import pandas as pd

    from storage import csvfile
    from storage.datasets import DatasetCatalog, DatasetCheck

__all__ = ["DatasetParts"]

_RUN_ID = re.compile(r"[a-z0-9_-]{1,80}")


class DatasetParts:
    """One run's parts of the dataset ``dataset_id``, in ``form`` ("csv" or "parquet")."""

    def __init__(self, catalog: DatasetCatalog, dataset_id: str, run_id: str, form: str) -> None:
        if form not in ("csv", "parquet"):
            raise InvalidField("format", f"must be csv or parquet, not {form!r}")
        if not _RUN_ID.fullmatch(run_id):
            raise ValueError(f"run id {run_id!r}: lowercase letters, digits, '_' and '-' only")
        self._catalog = catalog
        self.dataset_id = check_dataset_id(dataset_id)
        self.run_id = run_id
        self.form = form
        self._prefix = check_key(f"dataset-parts/{self.dataset_id}/{run_id}") + "/"

    def _key(self, index: int) -> str:
        return f"{self._prefix}{index:06d}.{self.form}"

    def write_described(self, index: int, frame: pd.DataFrame) -> list[tuple[str, str]]:
        """``write``, and for CSV the part's columns with their dtypes as the file reads back
        (pandas' C parser, not a scan value by value), for ``commit(described=...)``."""
        if self.form != "csv":
            self.write(index, frame)
            return []
        from storage import csvfile
        from storage.datasets import dtype_name

        whole = frame.to_csv(index=False, header=True).encode()
        read = csvfile.read(io.BytesIO(whole), ",")
        header = len(frame.iloc[:0].to_csv(index=False, header=True).encode())
        self._put(index, whole if index == 0 else whole[header:])
        return [(str(name), dtype_name(dtype)) for name, dtype in read.dtypes.items()]

    def _put(self, index: int, data: bytes) -> None:
        if index < 0:
            raise ValueError(f"part index {index} is negative")
        self._catalog.store.put(self._key(index), data)

    def write(self, index: int, frame: pd.DataFrame) -> None:
        """Store ``frame`` (its columns, not its index) as part ``index`` (0-based). Every part
        must have the same columns in the same order; part 0's become the CSV header."""
        if index < 0:
            raise ValueError(f"part index {index} is negative")
        if self.form == "csv":
            data = frame.to_csv(index=False, header=index == 0).encode()
        else:
            import pyarrow as pa  # the workers' import, as in storage.parquetfile
            import pyarrow.parquet as pq

            buffer = io.BytesIO()
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
            data = buffer.getvalue()
        self._catalog.store.put(self._key(index), data)

    def written(self) -> list[int]:
        """The indexes of the parts stored so far, ascending."""
        found = []
        for key in self._catalog.store.list(self._prefix):
            stem = key.removeprefix(self._prefix).split(".", 1)[0]
            if stem.isdigit() and key.endswith(f".{self.form}"):
                found.append(int(stem))
        return sorted(found)

    def committed(self) -> bool:
        """Whether this run's commit already happened: no parts are left and the dataset is
        there (a retried commit job asks before committing again)."""
        return not self.written() and self._catalog.store.exists(f"datasets/{self.dataset_id}.json")

    def commit(
        self,
        parts: int,
        *,
        owner: str = "",
        replace: bool = False,
        may_replace: DatasetCheck | None = None,
        described: csvfile.Parsed | None = None,
    ) -> datasets_pb2.Dataset:
        """Join parts ``0 .. parts-1`` into the dataset, stored as an upload would be (refused
        ALREADY_EXISTS unless ``replace``), then delete the parts. FailedPrecondition naming
        the parts missing; InvalidField if the joined file is not a valid dataset.
        ``described``: a CSV's columns, dtypes and rows as its parts' writers read them back
        (``write_described``, merged), so the joined file is not scanned again."""
        missing = sorted(set(range(parts)) - set(self.written()))
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise FailedPrecondition(
                f"dataset {self.dataset_id!r} cannot be committed: parts {shown} of {parts} "
                "were not written"
            )
        with (
            tempfile.TemporaryDirectory(prefix="mlgate-parts-") as folder,
            tempfile.TemporaryFile() as joined,
        ):
            if self.form == "csv":
                for index in range(parts):
                    self._catalog.store.download(self._key(index), joined)
            else:
                self._join_parquet(parts, Path(folder), joined)
            joined.seek(0)
            dataset = self._catalog.upload_file(
                self.dataset_id,
                joined,
                replace=replace,
                delimiter="," if self.form == "csv" else "",
                owner=owner,
                may_replace=may_replace,
                form=self.form,
                described=described if self.form == "csv" else None,
            )
        self.discard()
        return dataset

    def _join_parquet(self, parts: int, folder: Path, target: BinaryIO) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        paths = []
        for index in range(parts):
            path = folder / f"{index:06d}.parquet"
            with path.open("wb") as local:
                self._catalog.store.download(self._key(index), local)
            paths.append(path)
        # A part whose column held only blanks has a null column: the joined schema takes the
        # type the other parts give it. pandas' metadata (a part's index) is not the whole's.
        schemas = [pq.read_schema(path).remove_metadata() for path in paths]
        schema = pa.unify_schemas(schemas, promote_options="permissive")
        with pq.ParquetWriter(target, schema) as writer:
            for path in paths:
                table = pq.read_table(path).replace_schema_metadata(None)
                writer.write_table(table.cast(schema))

    def discard(self) -> None:
        """Delete this run's parts (a cancelled or failed run's leftovers)."""
        for key in list(self._catalog.store.list(self._prefix)):
            self._catalog.store.delete(key)
