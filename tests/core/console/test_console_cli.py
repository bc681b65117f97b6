"""`mpaas users` and the console admin that `mpaas init` makes, through the CLI."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from click.testing import CliRunner, Result
from console_support import PASSWORD, sign_in

from mpaas.app import create_app
from mpaas.cli.main import cli
from mpaas.settings import Settings


def env_of(settings: Settings) -> dict[str, str]:
    return {
        "MPAAS_DATA_DIR": str(settings.data_dir),
        "MPAAS_DATABASE_URL": settings.database_url,
        "MPAAS_CONSOLE_ARGON2_MEMORY_KIB": "1024",
        "MPAAS_LOG_JSON": "false",
    }


async def test_init_and_users_commands(aiohttp_client: Any, settings: Settings) -> None:
    env = env_of(settings)

    async def mpaas(*args: str, stdin: str | None = None) -> Result:
        """The CLI in a thread: its commands run their own event loop."""
        return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env, input=stdin)

    init = await mpaas("init", "--json")
    assert init.exit_code == 0, init.output
    first = json.loads(init.stdout)
    assert first["console_user"] == "admin" and len(first["console_password"]) >= 20
    again = await mpaas("init", "--json")
    assert json.loads(again.stdout)["console_password"] is None  # made once

    create = ("users", "create", "--password-stdin")
    made = await mpaas(*create, "fay", "--role", "analyst", stdin=PASSWORD + "\n")
    assert made.exit_code == 0, made.output
    short = await mpaas(*create, "gus", "--role", "analyst", stdin="short\n")
    assert short.exit_code != 0 and "12" in short.output and "Traceback" not in short.output
    dup = await mpaas(*create, "fay", "--role", "analyst", stdin=PASSWORD + "\n")
    assert dup.exit_code == 1 and dup.output.count("\n") == 1 and "already exists" in dup.output
    assert (await mpaas("users", "set-role", "fay", "release-manager")).exit_code == 0

    client = await aiohttp_client(create_app(settings))
    admin = await sign_in(client, "admin", first["console_password"])
    assert admin.status == 200 and (await admin.json())["role"] == "admin"
    fay = await sign_in(client, "fay")
    assert fay.status == 200 and (await fay.json())["role"] == "release-manager"

    assert (await mpaas("users", "disable", "fay")).exit_code == 0
    assert (await client.get("/console/api/session")).status == 401  # fay's session ended
    assert (await sign_in(client, "fay")).status == 401
    missing = await mpaas("users", "disable", "nobody")
    assert missing.exit_code == 1 and "no console account" in missing.output

    listed = json.loads((await mpaas("users", "list", "--json")).stdout)["items"]
    assert [(u["username"], u["role"], u["disabled"]) for u in listed] == [
        ("admin", "admin", False),
        ("fay", "release-manager", True),
    ]
    table = (await mpaas("users", "list")).stdout
    assert "fay" in table and "release-manager" in table
