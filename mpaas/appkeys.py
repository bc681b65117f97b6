"""Typed keys for the backends stored on the aiohttp application."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from mpaas.settings import Settings
from mpaas.storage.blobs import BlobStore
from mpaas.storage.db import Database
from mpaas.web.edge import Edge

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Database)
BLOBS = web.AppKey("blobs", BlobStore)
METRICS = web.AppKey("metrics", CollectorRegistry)
GC_SOURCES: web.AppKey[list[Any]] = web.AppKey("gc_sources")
#: Wraps every route (Api.register).
EDGE = web.AppKey("edge", Edge)
