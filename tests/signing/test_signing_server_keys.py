"""Key ceremonies through `mpaas keys` against a running mpaas app: rotations old
clients follow, a refused second ceremony, and the Expo certificate."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

from signing_support import APP, Server, h5
from tuf.api.metadata import Metadata, Root, Timestamp

from mpaas.appkeys import SETTINGS
from mpaas.signing.expo import verify_expo_signature

FULL_V2 = "offline/transfer/2.0.0/full.zip"


# ---------------------------------------------------------------- keys through the CLI


async def test_rotations_through_the_cli_keep_old_clients_updating(released: Server) -> None:
    old_device = released.device("old")
    await asyncio.to_thread(old_device.download, FULL_V2)

    out = json.loads(
        await released.cli(
            "keys",
            "rotate",
            "--app",
            APP,
            "--role",
            "timestamp",
            "--root-key",
            str(released.root_key),
            "--json",
        )
    )
    assert out["root_version"] == 2
    # The running server signs with the new key, found on disk by its id.
    await released.publish(h5(1, changed=5), "3.0.0")
    root2 = Metadata[Root].from_bytes(await released.metadata("2.root.json")).signed
    timestamp = Metadata[Timestamp].from_bytes(await released.metadata("timestamp.json"))
    assert list(timestamp.signatures) == root2.roles["timestamp"].keyids
    await asyncio.to_thread(old_device.refresh)
    await asyncio.to_thread(old_device.download, "offline/transfer/3.0.0/full.zip")

    new_root = released.tmp / "offline" / "root-2.pem"
    await released.cli(
        "keys", "rotate", "--app", APP, "--role", "root",
        "--root-key", str(released.root_key), "--new-root-key-out", str(new_root),
    )  # fmt: skip
    assert new_root.stat().st_mode & 0o077 == 0
    await released.publish(h5(1, changed=6), "4.0.0")
    for device in (old_device, released.device("pinned-v1-only")):
        await asyncio.to_thread(device.refresh)
        path = await asyncio.to_thread(device.download, "offline/transfer/4.0.0/full.zip")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == released.packages["4.0.0"]["archive_sha256"]

    # The old root key alone can no longer change the root.
    proc = await released.run_cli(
        "keys", "rotate", "--app", APP, "--role", "snapshot", "--root-key", str(released.root_key)
    )
    assert proc.returncode == 1 and "not signed by a threshold" in proc.stderr
    listing = json.loads(await released.cli("keys", "list", "--app", APP, "--json"))["items"][0]
    assert listing["root_version"] == 3
    online = [k for r in listing["roles"] if r["role"] != "root" for k in r["keys"]]
    assert online and all(k["on_disk"] for k in online)
    key_files = list((Path(released.client.app[SETTINGS].data_dir) / "keys" / APP).glob("*.pem"))
    assert len(key_files) == 4 and all(p.stat().st_mode & 0o077 == 0 for p in key_files)


async def test_keys_init_refuses_a_second_ceremony(released: Server) -> None:
    proc = await released.run_cli(
        "keys", "init", "--app", APP, "--root-key-out", str(released.tmp / "again.pem")
    )
    assert proc.returncode == 1 and "already has TUF keys" in proc.stderr
    assert not (released.tmp / "again.pem").exists()


async def test_expo_signature_from_the_cli_certificate(server: Server) -> None:
    cert = (await server.cli("keys", "expo-cert", "--app", APP)).encode()
    assert cert.startswith(b"-----BEGIN CERTIFICATE-----")
    body = json.dumps({"id": "0754dad0-d200-d634-113c-ef1f26106028", "launchAsset": {}}).encode()
    header = await server.signing.sign_expo_part(APP, body)
    assert verify_expo_signature(body, header, cert, keyid="main")
    for i in (0, len(body) // 2, len(body) - 1):
        changed = bytearray(body)
        changed[i] ^= 0x01
        assert not verify_expo_signature(bytes(changed), header, cert, keyid="main")
    assert server.signing.expo_certificate(APP) == cert
