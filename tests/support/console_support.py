"""Helpers of the console tests (tests/core/console): sign-in and the injected clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from mpaas.console.wiring import CONSOLE

PASSWORD = "correct horse battery"
#: Cheap argon2id for tests (production: 64 MiB).
CHEAP = {"console_argon2_memory_kib": 1024}


async def sign_in(client: Any, username: str, password: str = PASSWORD, **headers: str) -> Any:
    return await client.post(
        "/console/api/session", json={"username": username, "password": password}, headers=headers
    )


def advance(client: Any, delta: timedelta) -> None:
    """Move the console's injected clock forward (pinning it at now for ``timedelta(0)``)."""
    clock = client.app[CONSOLE].clock
    clock.fixed = clock() + delta
