"""What goes through a connection: requests, their answers, their credential, their timeout."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol


class Credential(Protocol):
    """An ``authorization`` value minted when a stream opens (e.g. a provider JWT).

    ``generation`` changes with every new value, so that a refusal can be traced to the
    exact credential it answered (:attr:`Http2Response.credential_generation`).
    """

    generation: int

    def get_header(self) -> str: ...


class RequestTimeout(Exception):
    """No answer within the request timeout; ``sent`` tells whether the request left the client."""

    def __init__(self, sent: bool) -> None:
        super().__init__(
            "sent, no answer in time" if sent else "never sent: no stream or flow-control window"
        )
        self.sent = sent


@dataclass(slots=True)
class Http2Response:
    """A complete answer: ``:status`` as sent (``""`` if missing), headers, the (capped) body."""

    status: str
    headers: dict[bytes, bytes]
    body: bytes
    #: :attr:`Credential.generation` of the ``authorization`` the request carried (0: none).
    credential_generation: int


class Http2Request:
    """One request queued on, or sent over, a connection; ``future`` gets its :class:`Http2Response`."""

    __slots__ = (
        "body",
        "body_sent",
        "credential_generation",
        "fields",
        "future",
        "path",
        "response_body",
        "response_headers",
        "stream_id",
        "timer",
    )

    def __init__(
        self,
        path: bytes,
        fields: list[tuple[bytes, bytes]],
        body: bytes,
        future: asyncio.Future[Http2Response],
    ) -> None:
        self.path = path
        self.fields = fields
        self.body = body
        self.future = future
        self.stream_id: int | None = None
        self.body_sent = 0
        self.timer: asyncio.TimerHandle | None = None
        self.credential_generation = 0
        self.response_headers: dict[bytes, bytes] = {}
        self.response_body = b""
