"""Regression tests: input that once reached a 500 now gets a clear JSON 4xx (issue 13)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpaas.errors import BadRequest, ValidationError
from mpaas.web.api import MAX_INT64, parse_int, parse_json
from tests_support import assert_error

DEEP = b"[" * 1000 + b"]" * 1000


async def test_json_nested_a_thousand_levels_is_a_400(client: Any, admin_headers: dict[str, str]) -> None:
    resp = await client.post("/api/v1/apps", data=DEEP, headers=admin_headers)
    assert resp.status == 400
    assert_error(await resp.json(), "invalid_json")
    # nothing was created
    listing = await (await client.get("/api/v1/apps", headers=admin_headers)).json()
    assert listing["total"] == 0


@pytest.mark.parametrize("token_id", [str(2**64), str(2**63), "-1", "0", "1e23", "1%0A"])
async def test_token_ids_past_64_bits_are_a_400(
    client: Any, admin_headers: dict[str, str], token_id: str
) -> None:
    resp = await client.delete(f"/api/v1/tokens/{token_id}", headers=admin_headers)
    assert resp.status == 400  # "1%0A" is "1\n" once decoded: a full match refuses it
    assert_error(await resp.json(), "validation_error")


@pytest.mark.parametrize("query", ["offset=1e23", f"offset={2**63}", "limit=0", "limit=501", "offset=-1"])
async def test_out_of_range_pagination_is_a_400(
    client: Any, admin_headers: dict[str, str], query: str
) -> None:
    resp = await client.get(f"/api/v1/audit?{query}", headers=admin_headers)
    assert resp.status == 400
    assert_error(await resp.json(), "validation_error")


@pytest.mark.parametrize("grace", [10**30, -1, True, 1.5])
async def test_gc_grace_out_of_range_is_a_400(client: Any, admin_headers: dict[str, str], grace: Any) -> None:
    resp = await client.post(
        "/api/v1/gc", json={"grace_seconds": grace, "dry_run": True}, headers=admin_headers
    )
    assert resp.status == 400
    assert_error(await resp.json(), "validation_error")


async def test_gc_grace_at_its_maximum_is_accepted(client: Any, admin_headers: dict[str, str]) -> None:
    from mpaas.ops.api import MAX_GRACE_SECONDS

    body = {"grace_seconds": MAX_GRACE_SECONDS, "dry_run": True}
    resp = await client.post("/api/v1/gc", json=body, headers=admin_headers)
    assert resp.status == 200


@given(st.text(max_size=30))
def test_parse_int_accepts_only_in_range_decimals(raw: str) -> None:
    try:
        value = parse_int(raw, "n")
    except ValidationError:
        return
    assert raw == str(value) or raw.lstrip("0") == str(value) or raw.startswith("-0")
    assert 0 <= value <= MAX_INT64


_TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00"))  # NUL is refused (test_nul_input.py)


@given(st.recursive(st.none() | st.integers() | _TEXT, lambda c: st.lists(c) | st.dictionaries(_TEXT, c)))
def test_parse_json_round_trips_what_json_can_hold(value: Any) -> None:
    import json

    assert parse_json(json.dumps(value).encode()) == value


@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_parse_json_refuses_any_depth_past_the_limit(depth: int) -> None:
    with pytest.raises(BadRequest):
        parse_json(b"[" * depth + b"]" * depth)


@pytest.mark.parametrize("name", ["bank\n", "bank\r\n", "\nbank"])
async def test_a_name_with_a_newline_is_refused(
    client: Any, admin_headers: dict[str, str], name: str
) -> None:
    resp = await client.post("/api/v1/apps", json={"name": name, "platforms": ["ios"]}, headers=admin_headers)
    assert resp.status == 400
    assert_error(await resp.json(), "validation_error")
    listing = await (await client.get("/api/v1/apps", headers=admin_headers)).json()
    assert listing["total"] == 0


async def test_an_over_long_authorization_header_never_reaches_the_log(
    aiohttp_client: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio
    import logging

    from mpaas.app import create_app
    from mpaas.logs import MalformedRequestFilter, setup_logging

    server_log = logging.getLogger("aiohttp.server")
    saved_root = logging.getLogger().handlers[:]
    try:
        setup_logging("INFO", as_json=True)
        assert any(isinstance(f, MalformedRequestFilter) for f in server_log.filters)
    finally:
        logging.getLogger().handlers[:] = saved_root
    client = await aiohttp_client(create_app(settings))
    secret = "mpaas_" + "S3cr3t" * 3000  # past aiohttp's 8190-byte header line limit
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(f"GET /api/v1/apps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n\r\n".encode())
    await writer.drain()
    with caplog.at_level(logging.DEBUG):
        answer = await reader.read()
    writer.close()
    assert answer.split(b" ", 2)[1] == b"400"
    assert "S3cr3t" not in caplog.text
    refused = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert refused and all(r.levelno == logging.WARNING and r.exc_info is None for r in refused)
