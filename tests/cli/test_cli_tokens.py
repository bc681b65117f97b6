"""Token expiry in the admin API (`expires_in_seconds`, `expires_at`) and the --expires parser."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from mpaas.cli.durations import DURATION_UNITS, MAX_DURATION_SECONDS, parse_duration
from mpaas.storage.db import utcnow


async def test_token_expiry_fields_of_the_admin_api(
    client: TestClient,
    admin_headers: dict[str, str],
) -> None:
    async def create(**fields: Any) -> tuple[int, dict[str, Any]]:
        resp = await client.post("/api/v1/tokens", json={"role": "analyst"} | fields, headers=admin_headers)
        return resp.status, await resp.json()

    later = (utcnow() + timedelta(days=2)).isoformat()
    status, body = await create(expires_at=later)
    assert status == 201 and body["expires_at"].startswith(later[:16])
    status, body = await create(expires_in_seconds=3600)
    assert status == 201 and body["expires_at"] is not None
    for bad in (
        {"expires_in_seconds": 5},
        {"expires_in_seconds": "3600"},
        {"expires_in_seconds": True},
        {"expires_at": "2020-01-01T00:00:00Z"},
        {"expires_at": "2999-01-01T00:00:00"},
        {"expires_at": "tomorrow"},
        {"expires_at": later, "expires_in_seconds": 3600},
    ):
        status, body = await create(**bad)
        assert status == 400 and body["error"]["code"], bad


@given(st.integers(1, 99_999), st.sampled_from(sorted(DURATION_UNITS)))
def test_parse_duration_reads_count_and_unit(count: int, unit: str) -> None:
    expected = count * DURATION_UNITS[unit]
    if expected > MAX_DURATION_SECONDS:
        with pytest.raises(ValueError, match="longer than 10 years"):
            parse_duration(f"{count}{unit}")
        return
    assert parse_duration(f"{count}{unit}") == expected
    assert parse_duration(f" {count}{unit.upper()} ") == expected


@given(st.text(max_size=12))
def test_parse_duration_rejects_anything_else_with_a_value_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        assert "duration" in str(exc) or "10 years" in str(exc)
    else:
        assert 0 < seconds <= MAX_DURATION_SECONDS


@given(st.text(max_size=12), st.booleans(), st.booleans())
def test_every_duration_flavour_refuses_with_a_value_error(text: str, bare: bool, zero: bool) -> None:
    try:
        seconds = parse_duration(text, bare_seconds=bare, zero=zero)
    except ValueError as exc:
        assert "duration" in str(exc) or "10 years" in str(exc)
    else:
        assert (0 if zero else 1) <= seconds <= MAX_DURATION_SECONDS


def test_bare_seconds_and_zero_are_opt_in() -> None:
    assert (
        parse_duration("90", bare_seconds=True) == 90
        and parse_duration("0", zero=True, bare_seconds=True) == 0
    )
    for text, flags in (("90", {}), ("0s", {}), ("0", {"bare_seconds": True})):
        with pytest.raises(ValueError):
            parse_duration(text, **flags)
