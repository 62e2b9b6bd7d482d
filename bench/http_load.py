"""The benches' HTTP/1.1 load: keep-alive connections sending one prepared request each time,
so what is measured is the server (the client parses a status line and a length, no more).
The same client drives mlgate's REST binding and MLServer's, and a call timer for any coroutine
(gRPC's too) measures each request's latency under the load."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Connection", "Load", "load", "post_json"]


def post_json(host: str, port: int, path: str, document: object) -> bytes:
    """A prepared keep-alive POST of ``document`` as JSON."""
    body = json.dumps(document).encode()
    return (
        b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (path.encode(), host.encode(), port, len(body), body)
    )


class Connection:
    """One keep-alive connection; ``call`` sends a prepared request and returns the body of a
    200 response (anything else raises)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(*await asyncio.open_connection(host, port))

    async def call(self, request: bytes) -> bytes:
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        length = -1
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length < 0:
            raise RuntimeError(f"a response without Content-Length: {head[:200]!r}")
        body = await self._reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(f"{head.split(b' ', 2)[1].decode()}: {body[:300].decode()}")
        return body

    async def json(self, request: bytes) -> Any:
        return json.loads(await self.call(request))

    def close(self) -> None:
        self._writer.close()


@dataclass(frozen=True)
class Load:
    """Requests per second with ``width`` in flight, and each request's latency meanwhile."""

    per_second: float
    p50_ms: float
    p99_ms: float

    @staticmethod
    def median(runs: list[Load]) -> Load:
        return Load(
            statistics.median(r.per_second for r in runs),
            statistics.median(r.p50_ms for r in runs),
            statistics.median(r.p99_ms for r in runs),
        )


async def load(calls: Sequence[Callable[[], Awaitable[object]]], total: int) -> Load:
    """``total`` calls, one lane per entry of ``calls`` (each a lane's own connection or a shared
    channel), every lane always with one in flight."""
    left = total
    samples: list[float] = []

    async def lane(call: Callable[[], Awaitable[object]]) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            started = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(lane(call) for call in calls))
    elapsed = time.perf_counter() - started
    samples.sort()
    return Load(
        total / elapsed,
        statistics.median(samples) * 1000,
        samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000,
    )
