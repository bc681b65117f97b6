"""The signing service signs what any :class:`TargetSource` hands it, knowing nothing else.

The packages domain is one such source (covered end to end in test_signing_server_tuf);
here a source over plain data shows the contract: publish, reconcile, channels, serving.
"""

from __future__ import annotations

import logging
from collections.abc import Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from signing_support import APP, sha

from mpaas.appkeys import DB
from mpaas.errors import NotFound
from mpaas.identity.models import App
from mpaas.identity.tenancy import get_app
from mpaas.signing.config import SigningConfig
from mpaas.signing.errors import SigningError
from mpaas.signing.service import SigningService
from mpaas.signing.targets import CHANNELS_FIELD, TargetBlob, TargetSpec

V1 = [
    TargetSpec("app/1/full.zip", 4, sha(b"full"), {"version": "1"}),
    TargetSpec("app/1/notes.txt", 5, sha(b"notes"), {"version": "1"}),
]


@dataclass
class DictSource:
    """A target source over plain data: a unit is a name, each app lists its units."""

    units: dict[str, list[TargetSpec]] = field(default_factory=lambda: {"v1": V1})
    apps: dict[str, list[str]] = field(default_factory=lambda: {APP: ["v1"]})

    async def unit_targets(self, unit: str) -> list[TargetSpec]:
        return list(self.units[unit])

    async def missing_targets(self, app_name: str, present: Set[str]) -> list[TargetSpec]:
        specs = [s for unit in self.apps.get(app_name, []) for s in self.units[unit]]
        return [s for s in specs if s.name not in present]

    async def holds_blob(self, app: App, sha256: str) -> bool:
        specs = [s for unit in self.apps.get(app.name, []) for s in self.units[unit]]
        return any(s.sha256 == sha256 for s in specs)


@pytest.fixture
async def bank(client: Any, admin_headers: dict[str, str]) -> App:
    resp = await client.post("/api/v1/apps", json={"name": APP, "platforms": ["ios"]}, headers=admin_headers)
    assert resp.status == 201
    return await get_app(client.app[DB], APP)


async def test_signs_what_the_source_hands_it(
    client: Any, bank: App, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = SigningService(client.app[DB], SigningConfig(keys_dir=tmp_path / "keys"), DictSource())
    built: list[str] = []

    async def build() -> list[TargetSpec]:
        built.append("called")
        return V1

    # Without keys nothing is built or signed.
    await service.sign_published(APP, build)
    assert built == [] and not await service.has_repository(APP)

    await service.init_app(APP, [tmp_path / "root.pem"])

    async def broken() -> list[TargetSpec]:
        raise OSError("blob store unreachable")

    caplog.set_level(logging.ERROR, logger="mpaas.signing")
    await service.sign_published(APP, broken, label="app/1")  # logged, never raised
    assert "reconciler will retry" in caplog.text
    assert await service.repo.list_targets(APP) == {}

    assert await service.reconcile(APP) == 2
    assert await service.reconcile(APP) == 0
    await service.sign_published(APP, build)
    assert built == ["called"]

    await service.set_channel(APP, "v1", "beta")
    await service.set_channel(APP, "v1", "prod")
    signed = await service.repo.list_targets(APP)
    assert [signed[s.name].custom[CHANNELS_FIELD] for s in V1] == [["beta", "prod"], ["beta", "prod"]]
    assert signed[V1[0].name].custom["version"] == "1"
    await service.set_channels(APP, "v1", ["prod"])
    signed = await service.repo.list_targets(APP)
    assert [signed[s.name].custom[CHANNELS_FIELD] for s in V1] == [["prod"], ["prod"]]

    assert await service.resolve_target(bank, f"app/1/{sha(b'full')}.full.zip") == TargetBlob(
        sha(b"full"), "full.zip"
    )
    for path in (f"app/1/{sha(b'other')}.full.zip", "app/1/full.zip", f"app/1/{sha(b'full')}."):
        with pytest.raises(NotFound):
            await service.resolve_target(bank, path)


async def test_without_a_source_there_is_nothing_to_sign(client: Any, bank: App, tmp_path: Path) -> None:
    service: SigningService[str] = SigningService(client.app[DB], SigningConfig(keys_dir=tmp_path / "keys"))
    await service.init_app(APP, [tmp_path / "root.pem"])
    assert await service.reconcile(APP) == 0
    with pytest.raises(NotFound):
        await service.resolve_target(bank, f"app/1/{sha(b'full')}.full.zip")
    with pytest.raises(SigningError, match="no target source"):
        await service.set_channels(APP, "v1", ["prod"])
