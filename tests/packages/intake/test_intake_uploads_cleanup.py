"""Rejected and stale uploads leave nothing behind; a streamed publish always ends with its outcome."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select, update

from mpaas.appkeys import DB, SETTINGS
from mpaas.identity.models import App, AuditEntry
from mpaas.packages.intake.uploads import UPLOAD_TTL, Uploads
from mpaas.packages.models import UploadSession
from mpaas.packages.service_key import PACKAGES

NDJSON = {"Accept": "application/x-ndjson"}


@pytest.fixture
async def bank(client: Any, admin_headers: dict[str, str]) -> None:
    body = {"name": "bank", "platforms": ["ios"]}
    assert (await client.post("/api/v1/apps", json=body, headers=admin_headers)).status == 201


def good_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.html", b"<html></html>")
    return buf.getvalue()


async def upload(client: Any, headers: dict[str, str], data: bytes) -> str:
    body = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    up = await (await client.post("/api/v1/apps/bank/uploads", json=body, headers=headers)).json()
    path = f"/api/v1/apps/bank/uploads/{up['upload_id']}/chunks?offset=0"
    assert (await client.put(path, data=data, headers=headers)).status == 200
    return str(up["upload_id"])


def part_files(client: Any) -> list[str]:
    return sorted(p.name for p in client.app[SETTINGS].uploads_dir.glob("*.part"))


async def sessions(client: Any) -> list[str]:
    async with client.app[DB].session() as s:
        return list((await s.exec(select(UploadSession.id))).all())


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.usefixtures("bank")
@pytest.mark.parametrize("streamed", [False, True], ids=["json", "ndjson"])
async def test_an_unsafe_archive_is_deleted_logged_and_audited(
    client: Any,
    admin_headers: dict[str, str],
    archive_factory: Any,
    caplog: pytest.LogCaptureFixture,
    streamed: bool,
) -> None:
    evil = archive_factory.craft_zip([archive_factory.ZipMember("../evil.js", b"x")])
    upload_id = await upload(client, admin_headers, evil)
    assert part_files(client) == [f"{upload_id}.part"]
    body = {"upload_id": upload_id, "kind": "offline", "id": "transfer", "version": "1.0.0"}
    headers = admin_headers | (NDJSON if streamed else {})
    with caplog.at_level(logging.INFO):
        resp = await client.post("/api/v1/apps/bank/packages", json=body, headers=headers)
        text = await resp.text()
    if streamed:
        final = ndjson(text)[-1]
        assert final["status"] == 400 and final["error"]["code"] == "unsafe_archive"
    else:
        assert resp.status == 400 and json.loads(text)["error"]["code"] == "unsafe_archive"
    assert part_files(client) == [] and await sessions(client) == []  # nothing left behind
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and getattr(r, "rule", None)]
    assert [r.rule for r in warned] == ["path_traversal"]  # type: ignore[attr-defined]
    access = [r for r in caplog.records if r.name == "mpaas.access" and r.path.endswith("/packages")]  # type: ignore[attr-defined]
    assert [r.status for r in access] == [400]  # type: ignore[attr-defined]  # not the 200 already sent
    async with client.app[DB].session() as s:
        refused = (await s.exec(select(AuditEntry).where(AuditEntry.action == "package.refused"))).all()
    assert [(e.app, e.detail["rule"], e.detail["upload_id"]) for e in refused] == [
        ("bank", "path_traversal", upload_id)
    ]


@pytest.mark.usefixtures("bank")
async def test_an_unexpected_error_ends_the_stream_with_an_error_line(
    client: Any, admin_headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    async def broken_hook(*_args: Any) -> None:
        raise RuntimeError("a bug after the commit")

    client.app[PACKAGES].hooks.append(broken_hook)
    upload_id = await upload(client, admin_headers, good_zip())
    body = {"upload_id": upload_id, "kind": "offline", "id": "transfer", "version": "1.0.0"}
    with caplog.at_level(logging.INFO):
        resp = await client.post("/api/v1/apps/bank/packages", json=body, headers=admin_headers | NDJSON)
        lines = ndjson(await resp.text())
    assert resp.status == 200  # the head went out before the outcome was known
    assert any("progress" in line for line in lines[:-1])
    assert lines[-1]["status"] == 500
    assert lines[-1]["error"]["code"] == "internal_error"
    assert resp.headers["X-Request-Id"] in lines[-1]["error"]["message"]
    access = [r for r in caplog.records if r.name == "mpaas.access" and r.path.endswith("/packages")]  # type: ignore[attr-defined]
    assert [r.status for r in access] == [500]  # type: ignore[attr-defined]
    assert any(r.name == "mpaas.error" and r.exc_info for r in caplog.records)


@pytest.mark.usefixtures("bank")
async def test_a_successful_streamed_publish_logs_201(
    client: Any, admin_headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    upload_id = await upload(client, admin_headers, good_zip())
    body = {"upload_id": upload_id, "kind": "offline", "id": "transfer", "version": "1.0.0"}
    with caplog.at_level(logging.INFO):
        resp = await client.post("/api/v1/apps/bank/packages", json=body, headers=admin_headers | NDJSON)
        final = ndjson(await resp.text())[-1]
    assert final["result"]["created"] is True
    access = [r for r in caplog.records if r.name == "mpaas.access" and r.path.endswith("/packages")]  # type: ignore[attr-defined]
    assert [r.status for r in access] == [201]  # type: ignore[attr-defined]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.usefixtures("bank")
async def test_the_sweeper_expires_sessions_and_orphans_on_its_timer(client: Any) -> None:
    settings, clock = client.app[SETTINGS], Clock()
    uploads = Uploads(client.app[DB], settings.uploads_dir, max_size=10_000, max_chunk=10_000, clock=clock)
    async with client.app[DB].session() as s:
        app = (await s.exec(select(App).where(App.name == "bank"))).one()
    stale = await uploads.create(app, "test", 10, None)
    orphan = settings.uploads_dir / ("f" * 32 + ".part")
    orphan.write_bytes(b"left by a crash")
    os.utime(orphan, (0, 0))  # its session row never made it: a crash between file and row
    clock.now += UPLOAD_TTL + timedelta(seconds=1)
    fresh = await uploads.create(app, "test", 10, None)

    import asyncio

    sweeper = asyncio.create_task(uploads.run_sweeper(interval=0))
    try:
        await asyncio.wait_for(uploads.swept.wait(), timeout=60)
    finally:
        sweeper.cancel()
    assert uploads.sweeps >= 1
    assert await sessions(client) == [fresh.id]
    assert part_files(client) == [f"{fresh.id}.part"]
    assert stale.id != fresh.id and not orphan.exists()


@pytest.mark.usefixtures("bank")
async def test_gc_reports_and_clears_stale_uploads(client: Any, admin_headers: dict[str, str]) -> None:
    upload_id = await upload(client, admin_headers, good_zip())
    async with client.app[DB].write() as s:  # this test's upload, expired a day ago
        past = datetime.now(UTC) - timedelta(days=1)
        await s.exec(update(UploadSession).where(UploadSession.id == upload_id).values(expires_at=past))  # type: ignore[arg-type]
    size = len(good_zip())
    dry = await (await client.post("/api/v1/gc", json={"dry_run": True}, headers=admin_headers)).json()
    assert (dry["stale_uploads"], dry["orphan_files"], dry["upload_bytes"]) == (1, 0, size)
    assert part_files(client) == [f"{upload_id}.part"]
    done = await (await client.post("/api/v1/gc", json={}, headers=admin_headers)).json()
    assert (done["stale_uploads"], done["dry_run"]) == (1, False)
    assert part_files(client) == [] and await sessions(client) == []
    again = await (await client.post("/api/v1/gc", json={}, headers=admin_headers)).json()
    assert again["stale_uploads"] == 0
