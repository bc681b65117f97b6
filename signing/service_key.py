"""The application key under which the signing service lives."""

from __future__ import annotations

from aiohttp import web

from mpaas.signing.service import SigningService

SIGNING = web.AppKey("signing", SigningService)
