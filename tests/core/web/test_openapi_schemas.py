"""The OpenAPI document says what handlers accept: parameter schemas, required inputs, limits."""

from __future__ import annotations

import re
from typing import Any

from mpaas.app import create_app
from mpaas.identity.tenancy import NAME_RE
from mpaas.web.api import MAX_INT64, pattern_schema


def _param(doc: dict[str, Any], method: str, path: str, name: str) -> dict[str, Any]:
    found = [p for p in doc["paths"][path][method]["parameters"] if p["name"] == name]
    assert len(found) == 1, (method, path, name)
    return found[0]


async def test_ids_names_and_pages_carry_their_rules(client: Any) -> None:
    doc = await (await client.get("/api/openapi.json")).json()
    token_id = _param(doc, "delete", "/api/v1/tokens/{token_id}", "token_id")["schema"]
    assert token_id == {"type": "integer", "minimum": 1, "maximum": MAX_INT64}
    # the app name rule is shared by every route with {app}, including other domains'
    for path in ("/api/v1/apps/{app}", "/api/v1/apps/{app}/releases", "/tuf/{app}/metadata/{filename}"):
        method = next(iter(doc["paths"][path]))
        assert _param(doc, method, path, "app")["schema"] == pattern_schema(NAME_RE)
    limit = _param(doc, "get", "/api/v1/audit", "limit")["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, 500)
    offset = _param(doc, "put", "/api/v1/apps/{app}/uploads/{upload_id}/chunks", "offset")
    assert offset["required"] is True
    expo = _param(doc, "get", "/expo/{app}/manifest", "expo-platform")
    assert expo["in"] == "header" and expo["required"] is True


async def test_a_limit_from_the_settings_is_in_the_document(aiohttp_client: Any, make_settings: Any) -> None:
    client = await aiohttp_client(create_app(make_settings(max_upload_bytes=12_345)))
    doc = await (await client.get("/api/openapi.json")).json()
    body = doc["paths"]["/api/v1/apps/{app}/uploads"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["properties"]["size"]["maximum"] == 12_345
    assert "U+0000" in doc["info"]["description"]


def test_pattern_schemas_are_anchored_as_the_handlers_full_match() -> None:
    """ECMA-262's ``$`` matches only at the end: the anchored pattern accepts what ``fullmatch`` does."""
    pattern = pattern_schema(NAME_RE)["pattern"]
    assert pattern.startswith("^(?:") and pattern.endswith(")$")
    ecma_like = re.compile(pattern[:-1] + r"\Z")  # Python's $ also matches before a final newline
    for text in ["bank", "b", "bank-2", "Bank", "bank\n", "-bank", "", "a" * 63, "a" * 64]:
        assert bool(ecma_like.search(text)) == bool(NAME_RE.fullmatch(text)), text
