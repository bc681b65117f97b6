"""Messages nobody can receive: a warning at send time and a final state, not ``queued`` forever."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from mpaas.push.worker import PushWorker
from mpaas.storage.db import utcnow
from tests_support import cli_in_thread

from .worker_env import Env, config, env

__all__ = ["env"]  # the fixture


async def message(e: Env, message_id: int) -> dict[str, Any]:
    resp = await e.client.get(f"/api/v1/apps/bank/push/messages/{message_id}", headers=e.ops)
    assert resp.status == 200
    out: dict[str, Any] = await resp.json()
    return out


async def expand(worker: PushWorker) -> None:
    for _ in range(3):  # expansion steps, then the step that finds nothing left and sets the state
        await worker.housekeeping_once()


async def test_no_matching_device_is_said_and_ends_undeliverable(env: Env) -> None:
    worker = PushWorker(env.db, {}, config())
    out = await env.send(audience={"users": ["nobody"]}, title="t")
    assert out["warnings"] == ["no device matches the audience: the message is undeliverable"]
    later = await env.send(
        audience={"users": ["nobody"]}, title="t", send_at=(utcnow() + timedelta(days=1)).isoformat()
    )
    assert later["warnings"] == [
        "no device matches the audience now; it is resolved again when the message is due"
    ]
    await expand(worker)
    assert (await message(env, out["id"]))["status"] == "undeliverable"
    assert (await message(env, later["id"]))["status"] == "scheduled"


async def test_devices_no_provider_serves_fail_as_no_provider_and_end_undeliverable(env: Env) -> None:
    await env.devices(2, provider="fcm")  # this server has no FCM credentials
    worker = PushWorker(env.db, {}, config())
    out = await env.send(audience={"all": True}, title="t")
    (warning,) = out["warnings"]
    assert warning.startswith(
        "2 matching device(s) use fcm, but FCM (MPAAS_FCM_SERVICE_ACCOUNT) is not configured"
    )
    await expand(worker)
    shown = await message(env, out["id"])
    assert shown["status"] == "undeliverable"
    stats = shown["stats"]
    assert (stats["targeted"], stats["pending"], stats["failed_by_reason"]) == (2, 0, {"no_provider": 2})
    # The WebSocket goes first with this policy, and every device has it: nothing to warn about.
    ws_first = await env.send(audience={"all": True}, title="t", fallback="ws")
    assert ws_first["warnings"] == []
    await expand(worker)
    assert (await message(env, ws_first["id"]))["status"] == "queued"


async def test_cli_send_prints_the_warnings(env: Env, tmp_path: Path) -> None:
    cli_env = {
        "MPAAS_SERVER": str(env.client.make_url("")).rstrip("/"),
        "MPAAS_TOKEN": env.ops["Authorization"].split()[1],
        "MPAAS_CONFIG_HOME": str(tmp_path / "cfg"),
    }
    proc = await cli_in_thread(["push", "send", "--app", "bank", "--user", "nobody", "--title", "t"], cli_env)
    assert "warning: no device matches the audience: the message is undeliverable" in proc.stderr.splitlines()
    assert proc.stdout.strip().splitlines()[-1].isdigit()  # the id stays the last line, for scripts
    proc = await cli_in_thread(["push", "send", "--app", "bank", "--all", "--title", "t", "--json"], cli_env)
    assert json.loads(proc.stdout)["warnings"] == [
        "no device matches the audience: the message is undeliverable"
    ]
