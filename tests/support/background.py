"""A gateway served from its own event loop on a background thread, for tests."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from server.app import Gateway
from tests.support.system_settings import SystemSettings

__all__ = ["BackgroundGateway"]


class BackgroundGateway:
    """Starts a gateway on a fresh thread and loop; ``start`` returns once it is serving."""

    def __init__(self, settings: SystemSettings, *, embedded_workers: bool = True) -> None:
        self.settings = settings
        self.embedded_workers = embedded_workers
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="gateway", daemon=True)
        self._started: Future[Gateway] = Future()
        self._gateway: Gateway | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def boot() -> None:
            try:
                workers = self.settings.worker if self.embedded_workers else None
                gateway = Gateway(self.settings.gateway, workers=workers)
                await gateway.start()
                self._started.set_result(gateway)
            except BaseException as exc:
                self._started.set_exception(exc)

        task = self.loop.create_task(boot())
        self.loop.run_forever()
        del task
        self.loop.close()

    def start(self, timeout: float = 60.0) -> BackgroundGateway:
        self.thread.start()
        self._gateway = self._started.result(timeout)
        return self

    @property
    def gateway(self) -> Gateway:
        assert self._gateway is not None, "not started"
        return self._gateway

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gateway.port}"

    def stop(self, grace: float = 2.0) -> None:
        asyncio.run_coroutine_threadsafe(self.gateway.stop(grace), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(60)
