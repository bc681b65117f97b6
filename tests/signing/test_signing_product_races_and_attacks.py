"""The in-memory repository's concurrency and attack tests (test_signing_tuf.py,
test_signing_tuf_keys.py), run again on the product: its SQL metadata store (SQLite and
PostgreSQL), its signing service, and its ``/tuf/{app}/...`` routes, read by python-tuf's
ngclient. The fast in-memory versions stay; these prove the product behaves the same.

(Tampered and longer targets, replayed timestamps and snapshots, mixed targets, untrusted
keys and expiry are in test_signing_server_tuf.py.)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging

import pytest
from securesystemslib.signer import CryptoSigner
from signing_support import APP, Mitm, Server
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import Metadata, Root, Timestamp

from mpaas.appkeys import SETTINGS
from mpaas.signing.config import SigningConfig
from mpaas.signing.errors import InvalidMetadata
from mpaas.signing.keys import app_key_dir
from mpaas.signing.service import SigningService
from mpaas.signing.signer import load_private_key_pem
from mpaas.signing.targets import TargetSpec
from mpaas.signing.tuf_root import SERIALIZER, sign_with

FULL_V2 = "offline/transfer/2.0.0/full.zip"


def service(server: Server, **kw: object) -> SigningService[object]:
    """Another signing service over the app's database and keys: what a second server
    process (or a clock that has moved) would run."""
    config = SigningConfig.from_settings(server.client.app[SETTINGS])
    return SigningService(server.signing.db, config, server.signing.targets, **kw)


async def test_concurrent_publishers_never_reuse_a_version_on_the_product_store(
    released: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mpaas.signing.tuf_repo")
    store = released.signing.store
    before = {role: await store.versions(APP, role) for role in ("targets", "snapshot", "timestamp")}
    publishers = [service(released).repo for _ in range(2)]  # two processes' repositories

    names: list[str] = []
    for round_ in range(8):
        batch = [f"packages/p{i}/{round_}/full.zip" for i in range(len(publishers))]
        names += batch
        await asyncio.gather(
            *(
                p.add_targets(APP, [TargetSpec(name, 1, hashlib.sha256(name.encode()).hexdigest())])
                for p, name in zip(publishers, batch, strict=True)
            ),
            publishers[round_ % 2].refresh_timestamp(APP),
        )

    # They really raced on the SQL store (and lost, and retried)...
    assert any("conflict" in record.getMessage() for record in caplog.records)
    # ...yet no update was lost, and every version of every role exists once, without gaps.
    assert set(names) <= set(await released.signing.repo.list_targets(APP))
    targets = await store.versions(APP, "targets")
    assert targets == list(range(1, before["targets"][-1] + 8 * 2 + 1))
    assert await store.versions(APP, "snapshot") == targets
    assert await store.versions(APP, "timestamp") == list(range(1, before["timestamp"][-1] + 8 * 3 + 1))
    # The product's routes serve the result, and a device still downloads a real package.
    device = released.device("after-race")
    await asyncio.to_thread(device.refresh)
    await asyncio.to_thread(device.download, FULL_V2)


@pytest.mark.parametrize("backend", ["sqlite"])  # the routes and the client; SQL raced above
async def test_refuses_snapshot_rollback_even_with_a_valid_timestamp(released: Server, mitm: Mitm) -> None:
    device = released.device("rollback", base=mitm.base)
    await asyncio.to_thread(device.refresh)  # has seen snapshot v3
    # An attacker holding the product's online timestamp key points a newer timestamp at
    # snapshot v2.
    (key_file,) = app_key_dir(released.client.app[SETTINGS].keys_dir, APP).glob("timestamp.*.pem")
    forged = Metadata[Timestamp].from_bytes(await released.metadata("timestamp.json"))
    forged.signed.version += 1
    forged.signed.snapshot_meta = (
        Metadata[Timestamp].from_bytes(await released.metadata("2.timestamp.json")).signed.snapshot_meta
    )
    sign_with(forged, [load_private_key_pem(key_file)])
    mitm.overrides["timestamp.json"] = forged.to_bytes(SERIALIZER)
    with pytest.raises(tuf_exc.BadVersionNumberError):
        await asyncio.to_thread(device.refresh)


@pytest.mark.parametrize("backend", ["sqlite"])  # the routes and the client; SQL raced above
async def test_refuses_root_signed_only_by_its_new_keys(released: Server, mitm: Mitm) -> None:
    forged = Metadata[Root].from_bytes(released.root)
    attacker = CryptoSigner.generate_ecdsa()
    forged.signed.version = 2
    for keyid in list(forged.signed.roles["root"].keyids):
        forged.signed.revoke_key(keyid, "root")
    forged.signed.add_key(attacker.public_key, "root")
    forged.signatures.clear()
    sign_with(forged, [attacker])
    mitm.overrides["2.root.json"] = forged.to_bytes(SERIALIZER)
    with pytest.raises(tuf_exc.UnsignedMetadataError):
        await asyncio.to_thread(released.device("new-root", base=mitm.base).refresh)
    # Nor does the product's own store take it: root v2 stays unpublished.
    with pytest.raises(InvalidMetadata):
        await released.signing.repo.publish_root(APP, forged.to_bytes(SERIALIZER))
    assert (await released.client.get(f"/tuf/{APP}/metadata/2.root.json")).status == 404


@pytest.mark.parametrize("backend", ["sqlite"])  # the routes and the client; SQL raced above
async def test_refuses_timestamp_signed_with_past_expiry(released: Server) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    await service(released, now=lambda: past).repo.refresh_timestamp(APP)
    with pytest.raises(tuf_exc.ExpiredMetadataError):
        await asyncio.to_thread(released.device("past").refresh)
