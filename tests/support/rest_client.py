"""The Open Inference Protocol's REST binding from the tests: the standard library's HTTP client,
one keep-alive connection, JSON in and out; and the README's patient as a REST request."""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from typing import Any

from tests.support.gateway_calls import DIABETES_FEATURES, README_ROW

__all__ = ["Answer", "RestClient", "readme_infer"]


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


class RestClient:
    """Requests to one gateway's REST port over one connection (HTTPS with ``context``), with a
    bearer ``token`` when given."""

    def __init__(
        self, port: int, *, context: ssl.SSLContext | None = None, token: str = ""
    ) -> None:
        self.connection: http.client.HTTPConnection = (
            http.client.HTTPSConnection("localhost", port, context=context, timeout=60)
            if context is not None
            else http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        )
        self.token = token

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.connection.close()

    def call(self, method: str, path: str, body: Any = None) -> Answer:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = body if isinstance(body, bytes) else None if body is None else json.dumps(body)
        self.connection.request(method, path, data, headers)
        response = self.connection.getresponse()
        raw = response.read()
        return Answer(
            response.status,
            json.loads(raw) if raw else None,
            {k.lower(): v for k, v in response.getheaders()},
        )

    def get(self, path: str) -> Answer:
        return self.call("GET", path)

    def post(self, path: str, body: Any) -> Answer:
        return self.call("POST", path, body)


def readme_infer(*, nested: bool = True, **fields: Any) -> dict[str, Any]:
    """The README's patient as one FP64 tensor [1, 9]: data nested as the shape is, or flat."""
    row = [README_ROW[name] for name in DIABETES_FEATURES]
    tensor = {
        "name": "input",
        "datatype": "FP64",
        "shape": [1, 9],
        "data": [row] if nested else row,
    }
    return {"inputs": [tensor], **fields}
