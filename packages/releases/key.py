"""The application key for the releases runtime: service, update index and protocol helpers."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from mpaas.packages.protocols.codepush import CodePushDiffs
from mpaas.packages.protocols.expo import ExpoManifests, PartSigner
from mpaas.packages.releases.service import ReleaseService
from mpaas.packages.releases.update_index import UpdateIndex
from mpaas.web.complete_response import ResponseHead


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
    #: The native check's 200: JSON, ``Cache-Control`` and ``X-Poll-Interval``, made once.
    answer_head: ResponseHead = field(init=False)
    #: ``public_url`` without a trailing slash, or "" to use the request's Host.
    base_url: str = field(init=False)

    def __post_init__(self) -> None:
        self.answer_head = ResponseHead(
            headers={"Cache-Control": "private, no-cache", "X-Poll-Interval": str(self.poll_interval)}
        )
        self.base_url = (self.public_url or "").rstrip("/")


RELEASES = web.AppKey("releases", ReleaseRuntime)
