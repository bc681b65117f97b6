"""Fixtures of the gateway tests: a running app with app ``bank``, an app key and the
reference client (tests/support/gateway_support.py); Redis where a test asks for it."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from gateway_support import Env, env_settings, start

from mpaas.settings import Settings

REDIS_URL = os.environ.get("MPAAS_TEST_REDIS_URL", "")


@pytest.fixture
async def env(aiohttp_client: Any, make_settings: Callable[..., Settings]) -> Env:
    return await start(aiohttp_client, env_settings(make_settings))


@pytest.fixture
def redis_url() -> str:
    if not REDIS_URL:
        pytest.skip("MPAAS_TEST_REDIS_URL is not set")
    return REDIS_URL


@pytest.fixture
def redis_prefix() -> str:
    return f"mpaas-test-{secrets.token_hex(6)}:"


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """The gateway's checks do not depend on the SQL dialect, so these tests run on SQLite;
    the SQL admission store runs on both dialects in test_gateway_admission.py."""
    return str(request.param)
