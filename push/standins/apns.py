"""An APNs stand-in: a raw HTTP/2 server, TLS or cleartext, with fault injection and counters.

It answers like ``api.push.apple.com``: ``POST /3/device/<token>`` with a provider JWT,
200 with the echoed ``apns-id``, and every error as a JSON ``{"reason": ...}`` body (410
adds ``timestamp`` in ms). Unlike aioapns 4.0 it honours HTTP/2 flow control both ways
(see :mod:`mpaas.push.standins.apns_server`, its wire side). Tests steer it by events:
:meth:`ApnsStandin.hold` keeps every answer until :meth:`ApnsStandin.release`,
:meth:`ApnsStandin.wait_for` waits until a condition on its counters holds, and
:meth:`ApnsStandin.goaway` / :meth:`ApnsStandin.drop_connections` end connections.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from mpaas.push.standins.apns_server import Answer, ApnsServerProtocol
from mpaas.push.standins.faults import Fault, FaultPlan
from mpaas.push.standins.tls import self_signed_server_context

_PATH_RE = re.compile(r"/3/device/([^/?]+)")
_HEX_RE = re.compile(r"[0-9A-Fa-f]+")


@dataclass(frozen=True)
class ApnsRequestRecord:
    apns_id: str
    token: str
    headers: Mapping[str, str]
    #: The request body; empty when the stand-in was told not to keep payloads.
    payload: bytes
    status: int


class ApnsStandin:
    """In-process APNs server with fault injection and counters.

    ``dead_tokens`` maps a token to the ms timestamp its 410 answer carries; ``bad_tokens``
    answer 400 BadDeviceToken. ``inject`` adds transient failures; ``response_delay`` slows
    every answer down (benchmarks and staging; tests use :meth:`hold`). ``cpu_seconds`` is
    the thread CPU time spent in the stand-in's HTTP/2 handling (not the kernel's TLS or
    socket work).
    """

    def __init__(
        self,
        *,
        verify_key: ec.EllipticCurvePublicKey | None = None,
        team_id: str | None = None,
        max_concurrent_streams: int = 1000,
        max_payload_bytes: int = 4096,
        record_payloads: bool = True,
        seed: int = 0,
    ) -> None:
        self.verify_key = verify_key
        self.team_id = team_id
        self.max_concurrent_streams = max_concurrent_streams
        self.max_payload_bytes = max_payload_bytes
        self.record_payloads = record_payloads
        self.faults = FaultPlan(seed)
        self.dead_tokens: dict[str, int] = {}
        self.bad_tokens: set[str] = set()
        self.response_delay = 0.0
        self.requests: list[ApnsRequestRecord] = []
        self.by_apns_id: Counter[str] = Counter()
        self.by_token: Counter[str] = Counter()
        self.bearer_tokens: Counter[str] = Counter()
        self.window_updates_received = 0
        #: DATA bytes of error bodies the stand-in has put on the wire.
        self.response_body_bytes = 0
        self.connections_accepted = 0
        self.cpu_seconds = 0.0
        self.host = "127.0.0.1"
        self.tls = False
        self._port: int | None = None
        self._server: asyncio.Server | None = None
        #: RST_STREAM frames received (requests the client gave up on).
        self.resets_received = 0
        #: While True, answers are decided and counted but kept in ``held`` until :meth:`release`.
        self.holding = False
        self.held: list[tuple[ApnsServerProtocol, int, str, Answer]] = []
        #: Open connections (their server-side protocols).
        self.live: set[ApnsServerProtocol] = set()
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._verified: dict[str, bool] = {}
        self.cert_pem = b""

    # -- control -----------------------------------------------------------------------

    def inject(
        self,
        status: int,
        reason: str,
        *,
        count: int | None = None,
        rate: float | None = None,
        retry_after: str | None = None,
    ) -> None:
        """Fail the next ``count`` requests, or a ``rate`` share of them, with this answer."""
        self.faults.inject(Fault(status, reason, retry_after), count=count, rate=rate)

    def reset_counters(self) -> None:
        self.requests.clear()
        self.by_apns_id.clear()
        self.by_token.clear()
        self.bearer_tokens.clear()
        self.window_updates_received = 0
        self.response_body_bytes = 0
        self.resets_received = 0
        self.cpu_seconds = 0.0

    def hold(self) -> None:
        """Keep every answer from now on until :meth:`release` (requests are still counted)."""
        self.holding = True

    def release(self) -> None:
        """Send the held answers, in order, and answer at once again."""
        self.holding = False
        held, self.held = self.held, []
        for connection, stream_id, apns_id, answer in held:
            connection.respond_later(stream_id, apns_id, answer)

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition()`` holds; re-checked whenever the stand-in has handled frames."""
        if condition():
            return
        waiter = (condition, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await waiter[1]
        finally:
            self._waiters.remove(waiter)

    def notify(self) -> None:
        """Wake the :meth:`wait_for` callers whose condition now holds."""
        for condition, future in self._waiters:
            if not future.done() and condition():
                future.set_result(None)

    def goaway(self) -> None:
        """Send GOAWAY on every open connection, as APNs may before it closes one."""
        for connection in list(self.live):
            connection.goaway()

    def drop_connections(self) -> None:
        """Abort every open connection (TCP reset, no GOAWAY): a lost connection."""
        for connection in list(self.live):
            connection.abort()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("stand-in not started")
        return self._port

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, tls: bool = False) -> None:
        ssl_context = None
        if tls:
            ssl_context, self.cert_pem = self_signed_server_context(host, "mpaas APNs stand-in")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ApnsServerProtocol(self), host, port, ssl=ssl_context, backlog=1024
        )
        self.host = host
        self.tls = tls
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        self.drop_connections()
        await self._server.wait_closed()
        self._server = None

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this stand-in's self-signed certificate."""
        if not self.cert_pem:
            raise RuntimeError("stand-in is not running with TLS")
        return ssl.create_default_context(cadata=self.cert_pem.decode())

    # -- request handling ----------------------------------------------------------------

    def _bearer_ok(self, bearer: str) -> bool:
        known = self._verified.get(bearer)
        if known is not None:
            return known
        ok = True
        try:
            header = jwt.get_unverified_header(bearer)
            if header.get("alg") != "ES256" or not header.get("kid"):
                ok = False
            elif self.verify_key is not None:
                claims = jwt.decode(
                    bearer,
                    self.verify_key,
                    algorithms=["ES256"],
                    options={"verify_iat": False, "require": ["iss", "iat"]},
                )
                ok = self.team_id is None or claims.get("iss") == self.team_id
        except jwt.PyJWTError:
            ok = False
        self._verified[bearer] = ok
        return ok

    def _decide(self, token: str, headers: Mapping[str, str], body: bytes) -> Answer:
        authorization = headers.get("authorization")
        if authorization is None:
            return Answer(403, "MissingProviderToken")
        scheme, _, bearer = authorization.partition(" ")
        if scheme.lower() != "bearer" or not self._bearer_ok(bearer):
            return Answer(403, "InvalidProviderToken")
        self.bearer_tokens[bearer] += 1
        if not headers.get("apns-topic"):
            return Answer(400, "MissingTopic")
        if len(body) > self.max_payload_bytes:
            return Answer(413, "PayloadTooLarge")
        if not body:
            return Answer(400, "PayloadEmpty")
        fault = self.faults.pick()
        if fault is not None:
            return Answer(fault.status, fault.reason, retry_after=fault.retry_after)
        invalid_since = self.dead_tokens.get(token)
        if invalid_since is not None:
            return Answer(410, "Unregistered", timestamp=invalid_since)
        if token in self.bad_tokens or not _HEX_RE.fullmatch(token):
            return Answer(400, "BadDeviceToken")
        return Answer(200)

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[str, Answer]:
        """Decide the answer to one complete request; returns (apns-id, answer)."""
        apns_id = headers.get("apns-id") or str(uuid.uuid4())
        if headers.get(":method") != "POST":
            return apns_id, Answer(405, "MethodNotAllowed")
        match = _PATH_RE.fullmatch(headers.get(":path", ""))
        if match is None:
            return apns_id, Answer(404, "BadPath")
        token = match.group(1)
        try:
            uuid.UUID(apns_id)
        except ValueError:
            answer = Answer(400, "BadMessageId")
        else:
            answer = self._decide(token, headers, body)
        self.by_apns_id[apns_id] += 1
        self.by_token[token] += 1
        self.requests.append(
            ApnsRequestRecord(
                apns_id=apns_id,
                token=token,
                headers=headers,
                payload=bytes(body) if self.record_payloads else b"",
                status=answer.status,
            )
        )
        return apns_id, answer
