"""The application key under which the push service lives."""

from __future__ import annotations

from aiohttp import web

from mpaas.push.service import PushService

PUSH = web.AppKey("push", PushService)
