"""The signing service of a running server: TUF targets, their freshness, Expo signatures.

* The publishing domain hands over what to sign as :class:`TargetSpec` values, and
  answers the questions of a :class:`TargetSource` (wired in ``mpaas/app.py``).
  New targets arrive through :meth:`SigningService.sign_published` right after they are
  committed; a reconciler asks the source for whatever a crash before that call left
  out, at start-up and on every maintenance run.
* A maintenance loop re-signs metadata before it expires. Several processes may run it
  at once: the store's unique (app, role, version) constraint lets exactly one win each
  version, and the others reload and find nothing left to do.
* Key ceremonies (:class:`~mpaas.signing.ceremonies.KeyCeremonies`) are available here
  too, against the same database and key directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Generic, TypeVar

from mpaas.errors import NotFound
from mpaas.identity.models import App
from mpaas.signing.ceremonies import KeyCeremonies
from mpaas.signing.config import SigningConfig
from mpaas.signing.errors import SigningError
from mpaas.signing.targets import CHANNELS_FIELD, TargetBlob, TargetSource, TargetSpec
from mpaas.signing.tuf_root import utcnow
from mpaas.storage.db import Database

log = logging.getLogger("mpaas.signing")

U = TypeVar("U")


class SigningService(KeyCeremonies, Generic[U]):
    """Signs the targets of a :class:`TargetSource` whose release units are ``U``."""

    def __init__(
        self,
        db: Database,
        config: SigningConfig,
        targets: TargetSource[U] | None = None,
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(db, config, now=now)
        self.targets = targets
        self._warned_without_keys: set[str] = set()
        self._channel_lock = asyncio.Lock()

    async def metadata(self, app_name: str, filename: str) -> bytes | None:
        """A metadata file as clients name it, or None (which clients must see as 404)."""
        return await self.store.get(app_name, filename)

    # ------------------------------------------------------------------ targets

    async def sign_published(
        self, app_name: str, targets: Callable[[], Awaitable[Sequence[TargetSpec]]], *, label: str = ""
    ) -> None:
        """Sign the targets of something just published; ``targets`` builds them on demand.

        It runs after the publisher's commit, so it never raises: a failure is logged,
        and the reconciler adds the targets on its next run. An app without TUF keys
        is skipped (with one warning per process).
        """
        if not await self.has_repository(app_name):
            if app_name not in self._warned_without_keys:
                self._warned_without_keys.add(app_name)
                log.warning(
                    "app has no TUF keys; what it publishes is not signed (run `mpaas keys init`)",
                    extra={"app": app_name},
                )
            return
        try:
            await self.repo.add_targets(app_name, await targets())
        except Exception:
            log.exception(
                "signing published targets failed; the reconciler will retry",
                extra={"app": app_name, "published": label},
            )

    async def set_channels(self, app_name: str, unit: U, channels: Iterable[str]) -> int:
        """Sign the complete set of channels ``unit`` is released to, on all its targets.

        The publishing domain passes the authoritative set from its own tables, so a
        late or repeated call converges on the right answer.
        """
        wanted = sorted(set(channels))
        specs = await self._source().unit_targets(unit)
        return await self.repo.add_targets(app_name, [s.with_custom({CHANNELS_FIELD: wanted}) for s in specs])

    async def set_channel(self, app_name: str, unit: U, channel: str) -> int:
        """Add one channel to those already signed for ``unit``.

        A read-modify-write: serialised in this process only. Callers in several
        processes should prefer :meth:`set_channels` with the full set.
        """
        async with self._channel_lock:
            signed = await self.repo.list_targets(app_name)
            have: set[str] = {channel}
            for spec in await self._source().unit_targets(unit):
                current = signed.get(spec.name)
                if current is not None:
                    have.update(current.custom.get(CHANNELS_FIELD, []))
            return await self.set_channels(app_name, unit, have)

    async def reconcile(self, app_name: str) -> int:
        """Add every target the source lists for the app that is not signed yet.

        Returns how many targets were added. Existing targets are left alone, so the
        channels signed through :meth:`set_channels` are kept.
        """
        if self.targets is None:
            return 0
        present = set(await self.repo.list_targets(app_name))
        missing = await self.targets.missing_targets(app_name, present)
        if missing:
            await self.repo.add_targets(app_name, missing)
            log.info("tuf targets reconciled", extra={"app": app_name, "added": len(missing)})
        return len(missing)

    async def resolve_target(self, app: App, path: str) -> TargetBlob:
        """Map ``{dir/}{sha256}.{basename}`` to a blob of one of the app's targets, or NotFound.

        Only what the source vouches for as the content of one of the app's targets is
        served, so the public route never exposes another app's or a private blob.
        """
        blob = TargetBlob.parse(path)
        if (
            blob is None
            or self.targets is None
            or not await self.has_repository(app.name)
            or not await self.targets.holds_blob(app, blob.sha256)
        ):
            raise NotFound("no such target file", code="target_not_found")
        return blob

    def _source(self) -> TargetSource[U]:
        if self.targets is None:
            raise SigningError("no target source is wired into the signing service")
        return self.targets

    # ------------------------------------------------------------------ freshness

    async def maintain(self) -> None:
        """One maintenance pass over every app with a repository: re-sign, then reconcile."""
        for app_name in await self.store.apps():
            try:
                resigned = await self.repo.refresh_expiring(app_name, self.config.refresh_within)
                if resigned:
                    log.info("tuf metadata re-signed", extra={"app": app_name, "roles": resigned})
                await self.reconcile(app_name)
            except Exception:
                log.exception("tuf maintenance failed", extra={"app": app_name})

    async def run_maintenance(self) -> None:
        """Maintenance forever, every ``refresh_interval`` seconds (jittered); cancel to stop."""
        interval = self.config.refresh_interval
        while True:
            await self.maintain()
            await asyncio.sleep(interval * random.uniform(0.8, 1.0))

    # ------------------------------------------------------------------ Expo code signing

    def expo_certificate(self, app_name: str) -> bytes | None:
        """The certificate PEM to embed in the app, or None if the app has none."""
        return self.expo.certificate(app_name)

    async def sign_expo_part(self, app_name: str, body: bytes) -> str:
        """The ``expo-signature`` header value for one multipart part body."""
        return await self.expo.sign_part(app_name, body)


async def stop_task(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
