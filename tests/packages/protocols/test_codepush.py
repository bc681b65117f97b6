"""The real CodePush acquisition SDK (code-push 4.2.3, from npm) against mpaas."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mpaas.packages.manifest import FileEntry, Manifest
from mpaas.packages.releases.key import RELEASES

Release = Callable[..., Awaitable[dict[str, Any]]]
V1 = {
    "CodePush/index.android.bundle": b"// v1\n" + b"a" * 4000,
    "CodePush/assets/img.png": b"\x89PNG" + b"i" * 3000,
    "CodePush/assets/gone.txt": b"removed in v2",
}
V2 = {
    "CodePush/index.android.bundle": b"// v2\n" + b"b" * 4000,
    "CodePush/assets/img.png": b"\x89PNG" + b"i" * 3000,
    "CodePush/assets/new.txt": b"added in v2",
}


def codepush_hash(files: dict[str, bytes]) -> str:
    import hashlib

    return Manifest(
        FileEntry(p, len(b), hashlib.sha256(b).hexdigest()) for p, b in files.items()
    ).codepush_hash


async def sdk(node: Any, compat: Path, client: Any, key: str, steps: list[str], **cfg: Any) -> dict[str, Any]:
    config = {
        "serverUrl": str(client.make_url("/")),
        "deploymentKey": key,
        "appVersion": "1.0.0",
        "clientUniqueId": "device-1",
        "steps": steps,
    } | cfg
    out = await node(compat, "codepush_client.js", json.dumps(config))
    assert "error" not in out, out
    return dict(out)


async def test_real_codepush_sdk(
    client: Any,
    admin_headers: dict[str, str],
    bank: dict[str, str],
    publish: Any,
    release: Release,
    compat_dir: Path,
    node: Any,
) -> None:
    key = bank["production"]
    await publish(V1, "1.0.0", target_binary_range="1.x")
    await publish(V2, "2.0.0", target_binary_range="1.x")
    r1 = await release("1.0.0")

    # A fresh install gets the full package.
    out = await sdk(node, compat_dir, client, key, ["check", "download", "deploy:DeploymentSucceeded"])
    pkg = out["check"]
    assert pkg["label"] == "v1" and pkg["packageHash"] == codepush_hash(V1)
    assert pkg["appVersion"] == "1.0.0" and pkg["isMandatory"] is False
    resp = await client.get(
        pkg["downloadUrl"].split(str(client.make_url("")), 1)[1], headers={"Accept-Encoding": "identity"}
    )
    full = await resp.read()
    assert int(resp.headers["Content-Length"]) == len(full) == pkg["packageSize"]
    with zipfile.ZipFile(io.BytesIO(full)) as zf:
        assert {n for n in zf.namelist() if not n.endswith("/")} == set(V1)

    # Current: no update.
    current = {"packageHash": codepush_hash(V1), "label": "v1"}
    out = await sdk(node, compat_dir, client, key, ["check"], current=current)
    assert out["check"] is None

    # A new release: a diff for the known hash, which rebuilds v2 exactly.
    r2 = await release("2.0.0", mandatory=True)
    out = await sdk(
        node, compat_dir, client, key, ["check", "download", "deploy:DeploymentSucceeded"], current=current
    )
    pkg = out["check"]
    assert pkg["label"] == "v2" and pkg["isMandatory"] is True and pkg["packageHash"] == codepush_hash(V2)
    resp = await client.get(pkg["downloadUrl"].split(str(client.make_url("")), 1)[1])
    diff = await resp.read()
    assert len(diff) == pkg["packageSize"] == int(resp.headers["Content-Length"])
    with zipfile.ZipFile(io.BytesIO(diff)) as zf:
        assert json.loads(zf.read("hotcodepush.json")) == {"deletedFiles": ["CodePush/assets/gone.txt"]}
        changed = {n: zf.read(n) for n in zf.namelist() if n != "hotcodepush.json"}
    assert set(changed) == {"CodePush/index.android.bundle", "CodePush/assets/new.txt"}
    rebuilt = {p: b for p, b in V1.items() if p != "CodePush/assets/gone.txt"} | changed
    assert codepush_hash(rebuilt) == pkg["packageHash"]

    # An unknown hash gets the full package; a binary outside the range gets nothing.
    out = await sdk(
        node, compat_dir, client, key, ["check"], current={"packageHash": "f" * 64, "label": "v0"}
    )
    assert out["check"]["packageSize"] > len(diff)
    out = await sdk(node, compat_dir, client, key, ["check"], appVersion="2.0.0")
    assert out["check"] is None
    out = await sdk(node, compat_dir, client, key, ["check"], appVersion="0.9.0")
    assert out["check"] == {"updateAppVersion": True, "appVersion": "1.x"}

    # Reports were counted once per device and event, even when retried.
    await sdk(node, compat_dir, client, key, ["check", "download"], current=current)
    for rid, downloads, installs in ((r1["id"], 1, 1), (r2["id"], 1, 1)):
        shown = await (await client.get(f"/api/v1/apps/bank/releases/{rid}", headers=admin_headers)).json()
        assert shown["counters"]["downloads"] == downloads and shown["counters"]["installs"] == installs
    shown = await (await client.get(f"/api/v1/apps/bank/releases/{r2['id']}", headers=admin_headers)).json()
    assert shown["counters"]["active_devices"] == 1
    rt = client.app[RELEASES]
    await rt.index.flush_checks(rt.service.add_checks)
    shown = await (await client.get(f"/api/v1/apps/bank/releases/{r2['id']}", headers=admin_headers)).json()
    assert shown["counters"]["checks"] >= 3


async def test_legacy_camelcase_routes(
    client: Any, bank: dict[str, str], publish: Any, release: Release
) -> None:
    await publish(V1, "1.0.0")
    await release("1.0.0")
    resp = await client.get(
        "/updateCheck",
        params={"deploymentKey": bank["production"], "appVersion": "1.0.0", "clientUniqueId": "x"},
    )
    info = (await resp.json())["updateInfo"]
    assert info["isAvailable"] is True and info["downloadURL"].startswith("http") and info["label"] == "v1"
    resp = await client.post(
        "/reportStatus/download",
        json={"deploymentKey": bank["production"], "label": "v1", "clientUniqueId": "x"},
    )
    assert resp.status == 200
    resp = await client.get(
        "/v0.1/public/codepush/update_check", params={"deployment_key": "bad", "app_version": "1"}
    )
    assert resp.status == 401
