"""Reading a stored dataset in row ranges, for work split over many jobs (batch scoring's shards).

``DatasetCatalog.open_reader(dataset_id)`` pins one stored version (its sha256) and reads it
whole at most once:

* Parquet: the file is spooled to local disk once; a range reads only the row groups it
  touches (the last row groups decoded are kept, so consecutive batches inside one row group
  decode it once), typed as the whole file reads (``storage.parquetfile``).
* CSV and built-in datasets: parsed whole once with the loader training uses, then sliced. A CSV
  column's dtype is pandas' inference over the whole column (one gap anywhere makes an integer
  column float), so a byte range parsed on its own could type a column otherwise than training
  saw it; one parse per reader is what keeps a shard's rows typed as the model was trained.

Every frame a reader returns is indexed by row number in the dataset (``RangeIndex(start,
stop)``), so parts written from ranges concatenate back in input order.
"""

from __future__ import annotations

import bisect
import tempfile
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from mlgate.errors import FailedPrecondition, InvalidField
from mlgate.v1 import datasets_pb2
from storage import parquetfile

if TYPE_CHECKING:
    import pandas as pd

    from storage.datasets import DatasetCatalog

__all__ = ["DatasetReader"]


class DatasetReader:
    """Rows of one version of a dataset. Open it with ``DatasetCatalog.open_reader``; close it
    (or use it in a ``with`` block) to drop its local copy. Not for use by two threads at once."""

    def __init__(self, catalog: DatasetCatalog, dataset: datasets_pb2.Dataset) -> None:
        self.dataset = dataset
        self._spool: IO[bytes] | None = None
        self._parquet: Any = None
        self._frame: pd.DataFrame | None = None
        self._starts: list[int] = []  # each row group's first row, then the row count
        self._decoded: tuple[tuple[int, int], pd.DataFrame] | None = None
        if dataset.format == "parquet" and not dataset.builtin:
            self._spool = tempfile.TemporaryFile()  # noqa: SIM115 (kept open until close())
            try:
                digest = catalog.download_data(dataset, self._spool)
                self._check(digest)
                self._spool.seek(0)
                self._parquet = parquetfile.open_file(self._spool)
            except BaseException:
                self.close()
                raise
            metadata = self._parquet.metadata
            self._starts = [0]
            for group in range(metadata.num_row_groups):
                self._starts.append(self._starts[-1] + metadata.row_group(group).num_rows)
        else:
            self._frame, digest = catalog.load_with_digest(dataset.id)
            self._check(digest)
        self.sha256 = digest

    def _check(self, digest: str) -> None:
        if digest != self.dataset.sha256:
            raise FailedPrecondition(
                f"dataset {self.dataset.id!r} changed while it was being read (it was replaced); "
                "run the job again to read the new data"
            )

    @property
    def rows(self) -> int:
        """The dataset's row count."""
        return int(self.dataset.rows)

    @property
    def dtypes(self) -> list[str]:
        return [column.dtype for column in self.dataset.columns]

    def read_rows(self, start: int, stop: int) -> pd.DataFrame:
        """Rows ``[start, stop)`` as a DataFrame typed as training reads the dataset, indexed by
        row number; InvalidField for a range outside ``0 <= start <= stop <= rows``."""
        if not 0 <= start <= stop <= self.rows:
            raise InvalidField(
                "rows",
                f"range [{start}, {stop}) is outside dataset {self.dataset.id!r}'s "
                f"{self.rows} rows",
            )
        if self._frame is not None:
            found = self._frame.iloc[start:stop].copy()
        else:
            found = self._parquet_rows(start, stop)
        import pandas as pd  # the workers' import; pandas is loaded already by now

        found.index = pd.RangeIndex(start, stop)
        return found

    def _parquet_rows(self, start: int, stop: int) -> pd.DataFrame:
        starts = self._starts
        first = min(bisect.bisect_right(starts, start) - 1, len(starts) - 2)
        last = first
        while last + 1 < len(starts) - 1 and starts[last + 1] < stop:
            last += 1
        if self._decoded is None or self._decoded[0] != (first, last):
            groups = range(first, last + 1)
            self._decoded = (
                (first, last),
                parquetfile.read_row_groups(self._parquet, groups, self.dtypes),
            )
        offset = start - starts[first]
        return self._decoded[1].iloc[offset : offset + stop - start]

    def iter_batches(
        self, batch_rows: int = 65_536, start: int = 0, stop: int | None = None
    ) -> Iterator[pd.DataFrame]:
        """Rows ``[start, stop)`` (default: all) in frames of at most ``batch_rows``."""
        end = self.rows if stop is None else stop
        for first in range(start, end, max(1, batch_rows)):
            yield self.read_rows(first, min(first + batch_rows, end))

    def close(self) -> None:
        self._parquet = self._frame = self._decoded = None
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def __enter__(self) -> DatasetReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
