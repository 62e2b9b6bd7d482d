"""Upload schemas worked out by the gateway without pandas: the dtypes pandas gives the workers."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mlgate.errors import FailedPrecondition
from storage import csvfile
from storage.datasets import DatasetCatalog, dtype_name
from storage.local import LocalObjectStore

# Awkward columns: in each file the first column is the one under test.
CORPUS = {
    "integers": "a,b\n1,2\n-3,4\n+5,6\n007,8\n",
    "integers with a gap": "a,b\n1,2\n,4\n",
    "integers with NA": "a,b\n1,2\nNA,4\n",
    "integers padded": "a,b\n 1,2\n\t2\t,3\n",
    "reals": "a,b\n1.5,1\n2,2\n.5,3\n5.,4\n1e5,5\n2E-3,6\n1.e5,7\n",
    "infinities": "a,b\ninf,1\n-Infinity,2\ninF,3\n1e400,4\n",
    "missing markers": "a,b\nnan,1\nNaN,2\n-NaN,3\nN/A,4\nNULL,5\n#N/A,6\nNone,7\n1.5,8\n",
    "not quite numbers": "a,b\n1_000,1\n2,2\n",
    "hex": "a,b\n0x10,1\n2,2\n",
    "spaced missing marker": "b,a\n1, NA\n2,2\n",
    "missing marker and a space": "a,b\nNA ,1\n2,2\n",
    "spaced nan": "a,b\nnan ,1\n2,2\n",
    "booleans": "a,b\nTrue,1\nfalse,2\nTRUE,3\nTrUe,4\n",
    "spaced booleans": "b,a\n1, true\n2,  FALSE\n",
    "booleans with a gap": "a,b\nTrue,1\n,2\n",
    "booleans and numbers": "a,b\nTrue,1\n1,2\n",
    "boolean and a space": "a,b\nTrue ,1\nFalse,2\n",
    "yes and no": "a,b\nyes,1\nno,2\n",
    "zeros and ones": "a,b\n1,1\n0,2\n",
    "text": "a,b\nred,1\ngreen,2\n",
    "mixed": "a,b\n1,1\nx,2\n",
    "nothing": "a,b\n,1\n,2\n",
    "quoted numbers": 'a,b\n"1",1\n"2",2\n',
    "quoted missing": 'a,b\n"NA",2\n1,4\n"",5\n',
    "quoted delimiter": 'a,b\n"1,5",2\n3,4\n',
    "line break in a field": 'a,b\n"x\ny",2\nz,3\n',
    "uint64": "a,b\n9223372036854775808,1\n2,2\n",
    "uint64 with a gap": "a,b\n9223372036854775808,1\n,2\n",
    "uint64 and negative": "a,b\n9223372036854775808,1\n-1,2\n",
    "uint64 and reals": "a,b\n9223372036854775808,1\n1.5,2\n",
    "past uint64": "a,b\n99999999999999999999999,1\n2,2\n",
    "past uint64 and reals": "a,b\n99999999999999999999999,1\n2.5,2\n",
    "past int64 negative": "a,b\n-9223372036854775809,1\n2,2\n",
    "non-breaking space": "a,b\n\u00a01,2\n3,4\n",
    "blank lines": "a,b\n1,2\n\n   \n3,4\n",
    "windows lines": "a,b\r\n1,2\r\n3,4\r\n",
    "byte order mark": "\ufeffa,b\n1,2\n",
    "header of numbers": "1,2\n3,4\n",
    "semicolons and decimal commas": "a;b\n1,5;1\n2,5;2\n",
    "semicolons": "a;b\n1.5;1\n2;2\n",
    "tabs": "a\tb\n1\tx\n2\ty\n",
    "pipes": "a|b\ntrue|1\nfalse|2\n",
}


@pytest.mark.parametrize("text", CORPUS.values(), ids=list(CORPUS))
def test_schema_is_what_pandas_reads(text: str) -> None:
    parsed = csvfile.parse(io.BytesIO(text.encode()))
    frame = csvfile.read(io.BytesIO(text.encode()), parsed.delimiter)
    assert parsed.columns == [(str(n), dtype_name(d)) for n, d in frame.dtypes.items()]
    assert parsed.rows == len(frame)


def test_upload_records_the_schema_of_the_bytes_as_sent(tmp_path: Path) -> None:
    catalog = DatasetCatalog(LocalObjectStore(tmp_path))
    data = b"size,colour\n1,red\n2,blue\n"
    source = io.BytesIO(b"ignored" + data)
    source.seek(len(b"ignored"))
    dataset = catalog.upload_file("houses", source)
    assert (dataset.rows, dataset.size_bytes) == (2, len(data))
    assert [(c.name, c.dtype) for c in dataset.columns] == [
        ("size", "integer"),
        ("colour", "string"),
    ]
    assert catalog.describe("houses") == dataset
    assert catalog.load("houses")["size"].tolist() == [1, 2]


def test_data_that_no_longer_reads_as_its_schema_is_refused(tmp_path: Path) -> None:
    catalog = DatasetCatalog(LocalObjectStore(tmp_path))
    catalog.upload_file("houses", io.BytesIO(b"size,colour\n1,red\n2,blue\n"))
    (tmp_path / "datasets" / "houses.csv").write_bytes(b"size,colour\nbig,red\n2,blue\n")
    with pytest.raises(FailedPrecondition, match="schema"):
        catalog.load("houses")
