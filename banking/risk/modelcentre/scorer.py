"""``ModelCentreScorer``: the :class:`~mpaas.banking.risk.decision.ModelScorer` the engine asks
for a scene's model. Loaded versions are cached by version (they are immutable); which
version scores a scene is re-read when the ``risk`` epoch moves (polled at most every
``poll_seconds``), so an activation reaches every process within one poll. Until a version
is activated for (scene, name), the shipped model answers for its own name.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from mpaas.banking.risk.modelcentre.models import RiskModel
from mpaas.banking.risk.modelcentre.registry import ModelRegistry, load, shipped
from mpaas.banking.risk.modelcentre.runtime import LoadedModel
from mpaas.banking.risk.store import current_epoch
from mpaas.storage.db import Database

log = logging.getLogger("mpaas.banking.risk.models")


class ModelCentreScorer:
    def __init__(
        self, db: Database, *, poll_seconds: float = 2.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.registry = ModelRegistry(db)
        self.db, self.poll_seconds, self.monotonic = db, poll_seconds, monotonic
        self._epoch: int | None = None
        self._checked = -1e18
        self._active: dict[tuple[str, str], LoadedModel | None] = {}
        self._versions: dict[tuple[str, int], LoadedModel] = {}
        self._shipped: LoadedModel | None = None
        self._pending: dict[tuple[str, str], asyncio.Task[LoadedModel | None]] = {}
        self._polling: asyncio.Task[None] | None = None
        #: how many times an artefact was parsed (a cache hit parses nothing)
        self.loads = 0

    async def active(self, scene: str, name: str) -> LoadedModel | None:
        if self._epoch is None:
            await self.refresh()
        elif self.monotonic() - self._checked >= self.poll_seconds and self._polling is None:
            # the poll runs beside the decision, never inside its deadline
            self._checked = self.monotonic()
            self._polling = asyncio.get_running_loop().create_task(self._poll())
        key = (scene, name)
        if key in self._active:
            return self._active[key]
        # One shared load per key, shielded: a caller's deadline may give up waiting, but the
        # load finishes and the next decision finds the model ready.
        task = self._pending.get(key)
        if task is None:
            task = self._pending[key] = asyncio.get_running_loop().create_task(self._settle(key, self._epoch))
        return await asyncio.shield(task)

    async def refresh(self) -> None:
        """Re-read the ``risk`` epoch now; when it moved, re-resolve every known (scene, name)
        before swapping them in, so decisions keep the old models until the new ones are loaded."""
        self._checked = self.monotonic()
        epoch = await current_epoch(self.db)
        if epoch == self._epoch:
            return
        fresh = {key: await self._resolve(*key) for key in list(self._active)}
        self._active, self._epoch = fresh, epoch

    async def _poll(self) -> None:
        try:
            await self.refresh()
        except Exception:
            log.exception("risk model refresh failed; keeping the loaded models")
        finally:
            self._polling = None

    async def _settle(self, key: tuple[str, str], epoch: int | None) -> LoadedModel | None:
        try:
            model = await self._resolve(*key)
            if epoch == self._epoch:
                self._active[key] = model
            return model
        finally:
            self._pending.pop(key, None)

    async def _resolve(self, scene: str, name: str) -> LoadedModel | None:
        chosen = await self.registry.activation(scene, name)
        if chosen is None:
            return await self._default(name)
        cached = self._versions.get((name, chosen.version))
        if cached is not None:
            return cached
        row: RiskModel = await self.registry.get(name, chosen.version)
        try:
            model = await asyncio.to_thread(load, row)  # parsing a model must not stall the loop
        except Exception:
            log.exception("risk model failed to load", extra={"model": f"{name}@{chosen.version}"})
            return None
        self.loads += 1
        self._versions[(name, chosen.version)] = model
        return model

    async def _default(self, name: str) -> LoadedModel | None:
        package = shipped()
        if package.name != name:
            return None
        if self._shipped is None:
            self._shipped = await asyncio.to_thread(package.model)
            self.loads += 1
        return self._shipped
