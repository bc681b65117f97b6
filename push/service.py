"""The push domain's runtime: the database, the in-process worker (optional) and the WebSocket hub."""

from __future__ import annotations

from dataclasses import dataclass, field

from mpaas.push.providers.base import PushProvider
from mpaas.push.worker import PushWorker
from mpaas.push.ws import WsHub
from mpaas.storage.db import Database


@dataclass
class PushService:
    db: Database
    hub: WsHub
    worker: PushWorker | None = None
    providers: dict[str, PushProvider] = field(default_factory=dict)

    def queued(self) -> None:
        """A message was created in this process: let the local worker and hub look now."""
        if self.worker is not None:
            self.worker.wake()
        self.hub.poke()

    async def start(self) -> None:
        self.hub.start()
        if self.worker is not None:
            self.worker.start()

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
            await self.worker.close_providers()
        await self.hub.stop()
