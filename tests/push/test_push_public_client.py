"""The push client routes: both deployment-key header names, body limits (413, nothing
stored), deep JSON as 400, and the receipts call exactly as docs/push.md writes it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mpaas.push import api as push_api

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])  # HTTP edge behaviour
HEADER_NAMES = ("X-Deployment-Key", "X-Mpaas-Deployment-Key")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "push.md"
DEEP = [b"[" * n + b"]" * n for n in (1000, 5000)] + [b'{"a":' * n + b"1" + b"}" * n for n in (1000, 2000)]


async def register(client: Any, headers: dict[str, str], device_id: str) -> Any:
    return await client.post(
        "/client/v1/devices", json={"device_id": device_id, "provider": "ws"}, headers=headers
    )


async def test_both_key_header_names_on_every_push_client_route(client: Any, bank: dict[str, str]) -> None:
    key = bank["production"]
    for name in HEADER_NAMES:
        device_id = f"dev-{name}"
        resp = await register(client, {name: key}, device_id)
        assert resp.status == 201, (name, await resp.text())
        device = {name: key, "X-Mpaas-Device-Id": device_id}
        device["X-Mpaas-Device-Secret"] = (await resp.json())["device_secret"]
        receipts = {"receipts": [{"delivery_id": "77", "type": "arrived"}]}
        resp = await client.post("/client/v1/push/receipts", json=receipts, headers=device)
        assert resp.status == 200, (name, await resp.text())
        assert await resp.json() == {"accepted": [], "unknown": ["77"]}
        ws = await client.ws_connect("/client/v1/push/ws", headers=device)
        await ws.close()
        resp = await client.delete(f"/client/v1/devices/{device_id}", headers=device)
        assert resp.status == 204, (name, await resp.text())
        # A wrong key under either name is refused.
        assert (await register(client, {name: "nope"}, "other")).status == 401


async def chunks(total: int) -> AsyncIterator[bytes]:
    for _ in range(0, total, 8192):
        yield b" " * 8192


async def test_oversized_bodies_are_413_and_store_nothing(client: Any, bank: dict[str, str]) -> None:
    key = bank["production"]
    headers = {"X-Deployment-Key": key, "Content-Type": "application/json"}
    big_device = {"device_id": "big", "provider": "ws", "user_id": "u" * push_api.DEVICE_LIMIT}
    resp = await client.post("/client/v1/devices", json=big_device, headers=headers)
    assert resp.status == 413 and (await resp.json())["error"]["code"] == "payload_too_large"
    resp = await client.post("/client/v1/devices", data=chunks(push_api.DEVICE_LIMIT + 1), headers=headers)
    assert resp.status == 413
    # Nothing was stored: the device id registers afresh (201, with a new secret).
    resp = await register(client, headers, "big")
    assert resp.status == 201
    device = headers | {
        "X-Mpaas-Device-Id": "big",
        "X-Mpaas-Device-Secret": (await resp.json())["device_secret"],
    }
    for data in (b" " * (push_api.RECEIPTS_LIMIT + 1), chunks(push_api.RECEIPTS_LIMIT + 1)):
        resp = await client.post("/client/v1/push/receipts", data=data, headers=device)
        assert resp.status == 413, await resp.text()
    for method, path in (("GET", "/client/v1/push/ws"), ("DELETE", "/client/v1/devices/big")):
        resp = await client.request(method, path, data=b" " * (push_api.NO_BODY_LIMIT + 1), headers=device)
        assert resp.status == 413, (path, await resp.text())


async def test_deeply_nested_json_is_400(client: Any, bank: dict[str, str]) -> None:
    key = bank["production"]
    resp = await register(client, {"X-Deployment-Key": key}, "deep")
    secret = (await resp.json())["device_secret"]
    device = {"X-Deployment-Key": key, "X-Mpaas-Device-Id": "deep", "X-Mpaas-Device-Secret": secret}
    for path in ("/client/v1/devices", "/client/v1/push/receipts"):
        for body in DEEP:
            resp = await client.post(path, data=body, headers=device | {"Content-Type": "application/json"})
            assert resp.status == 400, (path, resp.status, await resp.text())
            assert (await resp.json())["error"]["code"] in ("invalid_json", "validation_error")


def documented_receipts_call() -> tuple[str, str, dict[str, str], str]:
    """The ```http block of docs/push.md's receipts section: method, path, headers, body."""
    text = DOCS.read_text()
    block = re.search(r"```http\n(POST /client/v1/push/receipts\n.*?)```", text, re.S)
    assert block is not None, "docs/push.md lost its receipts example"
    head, body = block.group(1).split("\n\n", 1)
    request_line, *header_lines = head.splitlines()
    method, path = request_line.split(" ")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return method, path, headers, body.strip()


async def test_receipts_call_as_documented(client: Any, bank: dict[str, str]) -> None:
    key = bank["production"]
    resp = await register(client, {"X-Deployment-Key": key}, "doc-device")
    secret = (await resp.json())["device_secret"]
    values = {
        "<deployment key>": key,
        "<device id>": "doc-device",
        "<device secret>": secret,
        "<delivery id>": "4242",
    }
    method, path, headers, body = documented_receipts_call()
    assert "X-Deployment-Key" in headers  # the key travels with the device headers

    def fill(text: str) -> str:
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        assert "<" not in text, text
        return text

    filled = {name: fill(value) for name, value in headers.items()}
    resp = await client.request(method, path, data=fill(body).encode(), headers=filled)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"accepted": [], "unknown": ["4242"]}
    # Without the deployment key the same call is refused, as the doc says.
    del filled["X-Deployment-Key"]
    resp = await client.request(method, path, data=fill(body).encode(), headers=filled)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "invalid_deployment_key"
