"""Expo Updates protocol 1: a signed multipart manifest, parsed by Expo's own parser."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mpaas.signing.expo import verify_expo_signature
from mpaas.signing.service_key import SIGNING

Release = Callable[..., Awaitable[dict[str, Any]]]
METADATA = {
    "version": 0,
    "bundler": "metro",
    "fileMetadata": {
        "ios": {"bundle": "_expo/static/js/ios/index-1.hbc", "assets": [{"path": "assets/a1", "ext": "png"}]},
        "android": {
            "bundle": "_expo/static/js/android/index-1.hbc",
            "assets": [{"path": "assets/a1", "ext": "png"}, {"path": "assets/f2", "ext": "ttf"}],
        },
    },
}
FILES = {
    "metadata.json": json.dumps(METADATA).encode(),
    "_expo/static/js/ios/index-1.hbc": b"ios bytecode" * 100,
    "_expo/static/js/android/index-1.hbc": b"android bytecode" * 100,
    "assets/a1": b"\x89PNG" + b"p" * 500,
    "assets/f2": b"font" * 300,
}
HEADERS = {
    "expo-protocol-version": "1",
    "expo-platform": "android",
    "expo-runtime-version": "1.0.0",
    "expo-api-version": "1",
    "accept": "multipart/mixed,application/expo+json,application/json",
    "expo-expect-signature": 'sig, keyid="main", alg="rsa-v1_5-sha256"',
    "eas-client-id": "3f1c0d7e-0000-4000-8000-000000000001",
}


def b64url_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


async def parts(
    client: Any, node: Any, compat: Path, path: str, **headers: str
) -> tuple[int, list[Any], Any]:
    resp = await client.get(path, headers=HEADERS | headers)
    raw = await resp.read()
    if resp.status != 200:
        return resp.status, [], resp.headers
    assert resp.headers["expo-protocol-version"] == "1" and resp.headers["expo-sfv-version"] == "0"
    parsed = await node(compat, "expo_parse.js", resp.headers["Content-Type"], stdin=raw)
    assert isinstance(parsed, list), parsed
    return resp.status, parsed, resp.headers


async def test_signed_manifest_and_directives(
    client: Any,
    admin_headers: dict[str, str],
    bank: dict[str, str],
    publish: Any,
    release: Release,
    compat_dir: Path,
    node: Any,
) -> None:
    cert = await client.app[SIGNING].create_expo_certificate("bank")
    await publish(FILES, "1.0.0", target_binary_range="1.x")
    await release("1.0.0")

    status, got, _h = await parts(client, node, compat_dir, "/expo/bank/production/manifest")
    assert status == 200
    by_name = {p["name"]: p for p in got}
    manifest_part = by_name["manifest"]
    body = manifest_part["body"].encode()
    assert verify_expo_signature(body, manifest_part["headers"]["expo-signature"], cert, keyid="main")
    manifest = json.loads(body)
    assert manifest["runtimeVersion"] == "1.0.0" and manifest["createdAt"].endswith("Z")
    assert manifest["launchAsset"]["hash"] == b64url_sha256(FILES["_expo/static/js/android/index-1.hbc"])
    assert [a["fileExtension"] for a in manifest["assets"]] == [".png", ".ttf"]
    for asset in [manifest["launchAsset"], *manifest["assets"]]:
        resp = await client.get(asset["url"].split(str(client.make_url("")), 1)[1])
        assert b64url_sha256(await resp.read()) == asset["hash"]
    assert json.loads(by_name["extensions"]["body"]) == {"assetRequestHeaders": {}}

    # The channel from expo-channel-name; the same update id means noUpdateAvailable.
    status, got, _h = await parts(
        client, node, compat_dir, "/expo/bank/manifest", **{"expo-current-update-id": manifest["id"]}
    )
    directive = json.loads(got[0]["body"])
    assert got[0]["name"] == "directive" and directive == {"type": "noUpdateAvailable"}
    assert verify_expo_signature(got[0]["body"].encode(), got[0]["headers"]["expo-signature"], cert)

    # Another runtime version gets nothing; so does a channel with no release.
    status, _p, headers = await parts(
        client, node, compat_dir, "/expo/bank/production/manifest", **{"expo-runtime-version": "2.0.0"}
    )
    assert status == 204 and headers["expo-protocol-version"] == "1"
    assert (await parts(client, node, compat_dir, "/expo/bank/staging/manifest"))[0] == 204
    assert (await client.get("/expo/bank/nope/manifest", headers=HEADERS)).status == 404

    # Roll back to the embedded update: the rollBackToEmbedded directive.
    resp = await client.post(
        "/api/v1/apps/bank/channels/production/rollback",
        json={"id": "main", "to_embedded": True},
        headers=admin_headers,
    )
    assert resp.status == 201
    status, got, _h = await parts(
        client,
        node,
        compat_dir,
        "/expo/bank/production/manifest",
        **{"expo-current-update-id": manifest["id"]},
    )
    directive = json.loads(got[0]["body"])
    assert directive["type"] == "rollBackToEmbedded" and directive["parameters"]["commitTime"].endswith("Z")


async def test_unsigned_without_a_key(
    client: Any, bank: dict[str, str], publish: Any, release: Release
) -> None:
    await publish(FILES, "1.0.0")
    await release("1.0.0")
    resp = await client.get("/expo/bank/production/manifest", headers=HEADERS | {"expo-platform": "ios"})
    raw = await resp.read()
    assert resp.status == 200 and b"expo-signature" not in raw
    assert b"_expo/static/js/ios" not in raw  # assets are named by digest, not path
    assert b64url_sha256(FILES["_expo/static/js/ios/index-1.hbc"]).encode() in raw
