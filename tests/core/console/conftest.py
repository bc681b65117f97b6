"""A running app with cheap argon2id, and console accounts made through the service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from console_support import CHEAP, PASSWORD

from mpaas.app import create_app
from mpaas.appkeys import DB
from mpaas.console.accounts import create_account
from mpaas.console.wiring import CONSOLE
from mpaas.identity.audit import Actor
from mpaas.settings import Settings


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(**CHEAP)


@pytest.fixture
def make_account(client: Any) -> Callable[..., Any]:
    async def make(username: str, role: str = "admin") -> None:
        console = client.app[CONSOLE]
        await create_account(
            client.app[DB], console.passwords, Actor("test"), username=username, role=role, password=PASSWORD
        )

    return make


@pytest.fixture
async def make_client(aiohttp_client: Any, make_settings: Callable[..., Settings]) -> Callable[..., Any]:
    async def make(**overrides: Any) -> Any:
        return await aiohttp_client(create_app(make_settings(**(CHEAP | overrides))))

    return make
