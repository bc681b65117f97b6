"""What the client route modules share: the releases runtime, base URL and key lookup."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mpaas.packages.releases.channel_index import ChannelKey
from mpaas.packages.releases.errors import InvalidDeploymentKey
from mpaas.packages.releases.key import RELEASES, ReleaseRuntime


def runtime_of(request: web.Request) -> ReleaseRuntime:
    return request.app[RELEASES]


def base_url(request: web.Request, rt: ReleaseRuntime) -> str:
    return rt.base_url or f"{request.scheme}://{request.host}"


async def channel_by_key(rt: ReleaseRuntime, key: Any) -> ChannelKey:
    if not isinstance(key, str) or not key:
        raise InvalidDeploymentKey("a deployment key is required (X-Deployment-Key or deployment_key)")
    if "\x00" in key:  # no key holds one, and PostgreSQL refuses it in text
        raise InvalidDeploymentKey("unknown deployment key")
    channel = await rt.index.channel_for_key(key)
    if channel is None:
        raise InvalidDeploymentKey("unknown deployment key")
    return channel
