"""Start-up of the console: its service on the app, and its cookie hook in the guard."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from aiohttp import web

from mpaas.appkeys import DB, SETTINGS
from mpaas.console.passwords import Passwords
from mpaas.console.sessions import Console
from mpaas.identity.guard import COOKIE_AUTH

CONSOLE = web.AppKey("console", Console)


@asynccontextmanager
async def console_context(app: web.Application) -> AsyncIterator[None]:
    from mpaas.console.api import principal_from_cookie

    settings = app[SETTINGS]
    app[CONSOLE] = Console(
        app[DB],
        Passwords(settings.console_argon2_memory_kib),
        idle=timedelta(minutes=settings.console_idle_minutes),
        max_age=timedelta(hours=settings.console_max_hours),
    )
    app[COOKIE_AUTH] = principal_from_cookie
    yield
