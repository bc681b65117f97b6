"""`mpaas push cancel` and `mpaas devices list` (routes of mpaas.push.admin_api)."""

from __future__ import annotations

import json
from typing import Any

Mpaas = Any  # the `mpaas` fixture of tests/cli/conftest.py


async def test_devices_list_and_push_cancel(mpaas: Mpaas, client: Any, bank: dict[str, str]) -> None:
    for device, user, tags in (("d1", "u1", ["vip"]), ("d2", "u2", []), ("d3", "u1", ["vip", "beta"])):
        resp = await client.post(
            "/client/v1/devices",
            json={"device_id": device, "provider": "ws", "user_id": user, "tags": tags, "os": "android"},
            headers={"X-Deployment-Key": bank["production"]},
        )
        assert resp.status in (200, 201), await resp.text()

    listed = json.loads((await mpaas("devices", "list", "--app", "bank", "--json")).stdout)
    assert [d["device_id"] for d in listed["items"]] == ["d1", "d2", "d3"] and listed["total"] == 3
    assert all("token" not in d and "secret" not in json.dumps(d) for d in listed["items"])
    vip = json.loads((await mpaas("devices", "list", "--app", "bank", "--tag", "vip", "--json")).stdout)
    assert [d["device_id"] for d in vip["items"]] == ["d1", "d3"]
    by_user = (await mpaas("devices", "list", "--app", "bank", "--user", "u1", "--limit", "1")).stdout
    assert by_user.splitlines()[1].split()[:4] == ["d1", "ws", "u1", "vip"]
    assert "{" not in by_user and "[" not in by_user

    sent = await mpaas("push", "send", "--app", "bank", "--all", "--title", "later", "--at", "+1h")
    message_id = sent.stdout.strip().splitlines()[-1]
    out = await mpaas("push", "cancel", message_id, "--app", "bank")
    assert f"cancelled message {message_id}: 0 unsent deliveries withdrawn" in out.stderr
    again = await mpaas("push", "cancel", message_id, "--app", "bank", code=1)
    assert "message_not_cancellable" in again.stderr and "cancelled" in again.stderr
    listing = json.loads((await mpaas("push", "list", "--app", "bank", "--json")).stdout)["items"]
    assert [(str(m["id"]), m["status"]) for m in listing] == [(message_id, "cancelled")]
    missing = await mpaas("push", "cancel", "999999", "--app", "bank", code=1)
    assert "HTTP 404" in missing.stderr
    audit = json.loads((await mpaas("audit", "list", "--action", "push.cancel", "--json")).stdout)
    assert audit["items"][0]["target"] == f"push_message:{message_id}"
