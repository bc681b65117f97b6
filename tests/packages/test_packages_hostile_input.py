"""Regression tests (issue 13): publish and release input that once reached a 500, an
``assert`` or a trailing newline now gets a clear JSON 400 and changes nothing."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from release_fixtures import make_zip
from sqlalchemy import func
from sqlmodel import select

from mpaas.appkeys import DB
from mpaas.packages.models import Package


async def _upload(client: Any, headers: dict[str, str]) -> str:
    data = make_zip({"index.html": b"<html></html>"})
    sha = hashlib.sha256(data).hexdigest()
    resp = await client.post(
        "/api/v1/apps/bank/uploads", json={"size": len(data), "sha256": sha}, headers=headers
    )
    upload_id = str((await resp.json())["upload_id"])
    resp = await client.put(
        f"/api/v1/apps/bank/uploads/{upload_id}/chunks?offset=0", data=data, headers=headers
    )
    assert resp.status == 200
    return upload_id


async def _packages(client: Any) -> int:
    async with client.app[DB].session() as s:
        return int((await s.exec(select(func.count()).select_from(Package))).one())


@pytest.mark.parametrize(
    "change",
    [
        {"id": ""},
        {"version": ""},
        {"kind": ""},
        {"upload_id": ""},
        {"version": "1.0.0\n"},
        {"id": "transfer\n"},
        {"kind": "offline", "vhost": "bank.example\n"},
    ],
)
async def test_empty_or_newline_fields_are_a_400_and_publish_nothing(
    client: Any, admin_headers: dict[str, str], bank: dict[str, str], change: dict[str, str]
) -> None:
    body = {
        "upload_id": await _upload(client, admin_headers),
        "kind": "bundle",
        "id": "main",
        "version": "1.0.0",
    }
    resp = await client.post("/api/v1/apps/bank/packages", json=body | change, headers=admin_headers)
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] in ("validation_error", "invalid_package")
    assert await _packages(client) == 0


@pytest.mark.parametrize("release_id", [str(2**63), str(2**64), "0", "-5", "1e23"])
async def test_release_ids_out_of_range_are_a_400(
    client: Any, admin_headers: dict[str, str], bank: dict[str, str], release_id: str
) -> None:
    resp = await client.get(f"/api/v1/apps/bank/releases/{release_id}", headers=admin_headers)
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == "validation_error"


@pytest.mark.parametrize("offset", ["1e23", str(2**64), "-1"])
async def test_upload_chunk_offsets_out_of_range_are_a_400(
    client: Any, admin_headers: dict[str, str], bank: dict[str, str], offset: str
) -> None:
    resp = await client.post(
        "/api/v1/apps/bank/uploads", json={"size": 3, "sha256": "0" * 64}, headers=admin_headers
    )
    upload_id = (await resp.json())["upload_id"]
    resp = await client.put(
        f"/api/v1/apps/bank/uploads/{upload_id}/chunks?offset={offset}", data=b"abc", headers=admin_headers
    )
    assert resp.status == 400, await resp.text()


async def test_a_release_with_an_empty_package_id_is_a_400(
    client: Any, admin_headers: dict[str, str], bank: dict[str, str]
) -> None:
    resp = await client.post(
        "/api/v1/apps/bank/channels/staging/releases",
        json={"package_id": "", "version": "1.0.0"},
        headers=admin_headers,
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "validation_error"


@pytest.mark.parametrize("message_id", [str(2**64), "0"])
async def test_push_message_ids_out_of_range_are_a_400(
    client: Any, admin_headers: dict[str, str], bank: dict[str, str], message_id: str
) -> None:
    resp = await client.get(f"/api/v1/push/messages/{message_id}", headers=admin_headers)
    assert resp.status in (400, 404)
    if resp.status == 400:
        assert (await resp.json())["error"]["code"] == "validation_error"
