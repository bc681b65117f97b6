"""What the client route modules share: the releases runtime, base URL, signed download
links and key lookup."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mpaas.appkeys import SETTINGS
from mpaas.packages.protocols.links import BlobLinks, UrlSigner, signer_for
from mpaas.packages.releases.channel_index import ChannelKey
from mpaas.packages.releases.errors import InvalidDeploymentKey
from mpaas.packages.releases.key import RELEASES, ReleaseRuntime


def runtime_of(request: web.Request) -> ReleaseRuntime:
    return request.app[RELEASES]


def base_url(request: web.Request, rt: ReleaseRuntime) -> str:
    return rt.base_url or f"{request.scheme}://{request.host}"


#: id(settings) → (settings, signer): the hot path's lookup, one dict probe (the settings
#: are kept, so their id is never reused).
_SIGNERS: dict[int, tuple[Any, UrlSigner]] = {}


def url_signer(request: web.Request) -> UrlSigner:
    """The install's download URL signer (its key file is read once per process)."""
    settings = request.app[SETTINGS]
    found = _SIGNERS.get(id(settings))
    if found is None:
        found = _SIGNERS[id(settings)] = (settings, signer_for(settings.keys_dir))
    return found[1]


def blob_links(request: web.Request, rt: ReleaseRuntime) -> BlobLinks:
    """Signed, expiring download URLs for an answer to this request (ADR 0015)."""
    return url_signer(request).links(base_url(request, rt))


async def channel_by_key(rt: ReleaseRuntime, key: Any) -> ChannelKey:
    if not isinstance(key, str) or not key:
        raise InvalidDeploymentKey("a deployment key is required (X-Deployment-Key or deployment_key)")
    if "\x00" in key:  # no key holds one, and PostgreSQL refuses it in text
        raise InvalidDeploymentKey("unknown deployment key")
    channel = await rt.index.channel_for_key(key)
    if channel is None:
        raise InvalidDeploymentKey("unknown deployment key")
    return channel
