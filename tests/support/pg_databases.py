"""Per-test PostgreSQL databases, each a copy of one migrated template per test process."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mpaas.settings import Settings


def _off_loop(fn: Callable[[], Any]) -> Any:
    """Call ``fn`` in a thread of its own: it may run an event loop even if this thread does."""
    result: list[Any] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0] if result else None


def _run(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even inside a running loop."""
    return _off_loop(lambda: asyncio.run(coro))


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))


async def _pg_exec(url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        for stmt in statements:
            await conn.execute(stmt)
    finally:
        await conn.close()


class PgDatabases:
    """Creates per-test databases from a migrated template."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.template = f"mpaas_tpl_{os.getpid()}_{secrets.token_hex(3)}"
        self.created: list[str] = []
        self.ready = False

    def _prepare(self, data_dir: Path) -> None:
        from mpaas.storage.migrate import upgrade

        _run(_pg_exec(self.admin_url, f'CREATE DATABASE "{self.template}"'))
        self.created.append(self.template)
        settings = Settings.from_env(
            {}, {"data_dir": data_dir, "database_url": _with_db(self.admin_url, self.template)}
        )
        # Alembic runs its own event loop: off this thread, which may be running a test's loop
        # (the first PostgreSQL test of a worker can be an async one; regression).
        _off_loop(lambda: upgrade(settings))
        self.ready = True

    def new(self, data_dir: Path) -> str:
        if not self.ready:
            self._prepare(data_dir)
        name = f"mpaas_t_{os.getpid()}_{secrets.token_hex(4)}"
        _run(_pg_exec(self.admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
        self.created.append(name)
        return _with_db(self.admin_url, name)

    def drop_all(self) -> None:
        """Drop this process's databases, and those left by test processes that died, in a
        process of its own: each DROP DATABASE waits for a checkpoint (a second or more each
        on a loaded machine), and the run need not wait for hundreds of them."""
        subprocess.Popen(
            [sys.executable, "-c", DROPPER, self.admin_url, *reversed(self.created)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


#: argv: the admin URL, then the databases to drop; also drops test databases whose
#: process (the pid in their name) no longer runs.
DROPPER = """
import asyncio, os, re, sys
import asyncpg

def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

async def main(url, names):
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'mpaas_t%'")
        for (name,) in rows:
            m = re.fullmatch(r"mpaas_(?:t|tpl)_([0-9]+)_[0-9a-f]+", name)
            if m and not alive(int(m.group(1))) and name not in names:
                names.append(name)
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()

asyncio.run(main(sys.argv[1], sys.argv[2:]))
"""
