"""How large one ModelInfer request may be: its rows (``MLGATE_INFER_MAX_ROWS``), and its bytes
as sent and as its tensors decode (``MLGATE_INFER_MAX_BYTES``); each refusal is
RESOURCE_EXHAUSTED naming the limit and the variable that raises it.

The bytes as sent are checked before the request is parsed; rows and decoded bytes come from
the request's shapes and datatypes (and its raw contents' lengths), checked before the tensors
are (``mlgate.tensors.check_request``) and long before a worker decodes them. How much the
gateway holds for the workers at once is the batcher's bound (``server.batching``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mlgate.errors import ResourceExhausted
from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.quoting import quote
from mlgate.tensors import DATATYPES

__all__ = ["RequestLimits", "RequestTooLarge", "size_text"]

# An unknown datatype is refused by the tensor checks; until then it counts as the widest.
_WIDEST = 8


def size_text(size: int) -> str:
    """A byte count as people read it: ``70.0 MiB``, ``512 KiB``, ``100 bytes``."""
    if size >= 2**20:
        return f"{size / 2**20:.1f} MiB"
    if size >= 2**10:
        return f"{size / 2**10:.0f} KiB"
    return f"{size} bytes"


def _product(shape: Iterable[int]) -> int:
    total = 1
    for dim in shape:
        total *= max(dim, 0)
    return total


class RequestTooLarge(ResourceExhausted):
    """A request over one of these bounds: sending it again will not help (the REST binding
    answers 413, not 429)."""


@dataclass(frozen=True)
class RequestLimits:
    """The bounds of one ModelInfer request."""

    max_rows: int
    max_bytes: int

    def _refuse(self, what: str, limit: str, variable: str) -> RequestTooLarge:
        return RequestTooLarge(
            f"{what}, over this gateway's limit of {limit} per ModelInfer request ({variable}); "
            "send fewer rows per request, or ask its operator to raise the limit"
        )

    def check_sent(self, size: int) -> None:
        """Before parsing: the request's size as it arrived."""
        if size > self.max_bytes:
            raise self._refuse(
                f"the request is {size_text(size)}",
                size_text(self.max_bytes),
                "MLGATE_INFER_MAX_BYTES",
            )

    def check_tensors(self, request: pb.ModelInferRequest) -> None:
        """Before the tensors are checked or decoded: rows and decoded bytes, as the request's
        shapes, datatypes and raw contents say."""
        decoded = 0
        for i, tensor in enumerate(request.inputs):
            shape = list(tensor.shape)
            if shape and shape[0] > self.max_rows:
                raise self._refuse(
                    f"inputs[{i}] ({quote(tensor.name, 40)}) has {shape[0]:,} rows",
                    f"{self.max_rows:,} rows",
                    "MLGATE_INFER_MAX_ROWS",
                )
            datatype = DATATYPES.get(tensor.datatype)
            if datatype is not None and datatype.itemsize == 0:  # BYTES: as long as they are
                if i < len(request.raw_input_contents):
                    decoded += len(request.raw_input_contents[i])
                else:
                    decoded += sum(len(v) for v in tensor.contents.bytes_contents)
            else:
                itemsize = datatype.itemsize if datatype is not None else _WIDEST
                decoded += _product(shape) * itemsize
        if decoded > self.max_bytes:
            raise self._refuse(
                f"its tensors decode to {size_text(decoded)} (shape times datatype size)",
                size_text(self.max_bytes),
                "MLGATE_INFER_MAX_BYTES",
            )
