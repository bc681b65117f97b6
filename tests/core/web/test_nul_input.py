"""A NUL character anywhere in the input is a clean 4xx (PostgreSQL refuses it in text: it was a 500)."""

from __future__ import annotations

from typing import Any

import pytest

from tests_support import assert_error

URLS = [
    ("GET", "/api/v1/apps/a%00b", "validation_error"),
    ("GET", "/api/v1/audit?app=a%00b", "validation_error"),
    ("GET", "/api/v1/apps/bank/releases?channel=a%00b", "validation_error"),
    ("GET", "/api/v1/apps/bank/packages/any/a%00b/1.0", "validation_error"),
    ("GET", "/tuf/a%00b/metadata/1.root.json", "validation_error"),  # public
    ("GET", "/expo/bank/a%00b/manifest", "validation_error"),  # public
    ("GET", "/v0.1/public/codepush/update_check?deployment_key=a%00b&app_version=1.0", "validation_error"),
    ("POST", "/api/v1/apps/bank/channels/a%00b/rollback", "validation_error"),
]
BODIES = [
    ("/api/v1/tokens", {"role": "admin", "name": "a\x00b"}, "validation_error"),
    (
        "/api/v1/apps/bank/push/messages",
        {"audience": {"users": ["a\x00b"]}, "title": "t"},
        "validation_error",
    ),
    (
        "/api/v1/apps/bank/channels/staging/releases",
        {"package_id": "p", "version": "1", "x\x00": 1},
        "validation_error",
    ),
    ("/client/v1/updates", {"deployment_key": "a\x00b", "device_id": "d"}, "invalid_deployment_key"),
    (
        "/client/v1/devices",
        {"deployment_key": "a\x00b", "device_id": "d", "provider": "ws"},
        "validation_error",
    ),
]


@pytest.fixture
async def bank(client: Any, admin_headers: dict[str, str]) -> None:
    body = {"name": "bank", "platforms": ["ios"]}
    assert (await client.post("/api/v1/apps", json=body, headers=admin_headers)).status == 201


@pytest.mark.usefixtures("bank")
async def test_a_nul_in_the_url_is_a_400(client: Any, admin_headers: dict[str, str]) -> None:
    for method, url, code in URLS:
        resp = await client.request(method, url, headers=admin_headers, json={"id": "x"})
        assert resp.status == 400, (url, await resp.text())
        assert_error(await resp.json(), code)


@pytest.mark.usefixtures("bank")
async def test_a_nul_in_a_body_string_is_a_4xx(client: Any, admin_headers: dict[str, str]) -> None:
    for url, body, code in BODIES:
        resp = await client.post(url, json=body, headers=admin_headers)
        assert resp.status in (400, 401), (url, await resp.text())
        assert_error(await resp.json(), code)


async def test_the_text_u0000_without_a_nul_is_still_accepted(
    client: Any, admin_headers: dict[str, str]
) -> None:
    resp = await client.post(
        "/api/v1/tokens", json={"role": "analyst", "name": "\\u0000 literally"}, headers=admin_headers
    )
    assert resp.status == 201
    assert (await resp.json())["name"] == "\\u0000 literally"
