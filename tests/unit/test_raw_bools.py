"""Raw BOOL contents are one byte per element, 0 or 1: any other byte is refused naming the input
(numpy would read it as a bool that is neither true nor false, and the probe's went through)."""

from __future__ import annotations

import numpy as np
import pytest

from mlgate.errors import InvalidField
from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.v1 import models_pb2
from workers.tensors import decode

RECORD = models_pb2.Model(
    features=[
        models_pb2.Feature(name="size", dtype="numeric"),
        models_pb2.Feature(name="member", dtype="boolean"),
    ]
)


def _request(bools: bytes) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="size", datatype="FP64", shape=[len(bools)])
    request.inputs.add(name="member", datatype="BOOL", shape=[len(bools)])
    request.raw_input_contents.extend([np.zeros(len(bools)).tobytes(), bools])
    return request


def test_zero_and_one_are_false_and_true() -> None:
    columns = decode(_request(b"\x00\x01\x01"), RECORD)
    assert isinstance(columns, dict)
    assert columns["member"].tolist() == [False, True, True]


@pytest.mark.parametrize(("raw", "byte", "element"), [(b"\x00\x02", 2, 1), (b"\xff\x00", 255, 0)])
def test_any_other_byte_is_refused_naming_the_input(raw: bytes, byte: int, element: int) -> None:
    with pytest.raises(InvalidField) as caught:
        decode(_request(raw), RECORD)
    assert str(caught.value) == (
        f"inputs[1] ('member'): raw BOOL contents hold byte {byte} at element {element}; "
        "each element is one byte, 0 (false) or 1 (true)"
    )
