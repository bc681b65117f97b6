"""The application key for the releases runtime: service, update index and protocol helpers."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from mpaas.packages.protocol_codepush import CodePushDiffs
from mpaas.packages.protocol_expo import ExpoManifests, PartSigner
from mpaas.packages.releases import ReleaseService
from mpaas.packages.update_index import UpdateIndex


@dataclass
class ReleaseRuntime:
    service: ReleaseService
    index: UpdateIndex
    diffs: CodePushDiffs
    expo: ExpoManifests
    #: Seconds a client should wait before its next update check.
    poll_interval: int
    #: Base URL for download links; None means "from the request's Host".
    public_url: str | None = None
    signer: PartSigner | None = None


RELEASES = web.AppKey("releases", ReleaseRuntime)
