"""The application key under which the packages service lives."""

from __future__ import annotations

from aiohttp import web

from mpaas.packages.service import PackageService

PACKAGES = web.AppKey("packages", PackageService)
