"""An APNs stand-in: a raw HTTP/2 server (``h2`` over an ``asyncio.Protocol``), TLS or cleartext.

It answers like ``api.push.apple.com``: ``POST /3/device/<token>`` with a provider JWT,
200 with the echoed ``apns-id``, and every error as a JSON ``{"reason": ...}`` body (410
adds ``timestamp`` in ms). Unlike aioapns 4.0 it honours HTTP/2 flow control both ways:
it acknowledges what it receives, and it holds answers back while the client's receive
window is exhausted - exactly what makes a client that never sends WINDOW_UPDATE stall.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import re
import ssl
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes

from mpaas.push.standins.faults import Fault, FaultPlan

_PATH_RE = re.compile(r"/3/device/([^/?]+)")
_HEX_RE = re.compile(r"[0-9A-Fa-f]+")
_MAX_REQUEST_BODY = 64 * 1024


@dataclass(frozen=True)
class ApnsRequestRecord:
    apns_id: str
    token: str
    headers: Mapping[str, str]
    #: The request body; empty when the stand-in was told not to keep payloads.
    payload: bytes
    status: int


@dataclass(frozen=True)
class _Answer:
    status: int
    reason: str | None = None
    timestamp: int | None = None
    retry_after: str | None = None


class _Request:
    __slots__ = ("body", "headers")

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers
        self.body = bytearray()


class ApnsStandin:
    """In-process APNs server with fault injection and counters.

    ``dead_tokens`` maps a token to the ms timestamp its 410 answer carries; ``bad_tokens``
    answer 400 BadDeviceToken. ``inject`` adds transient failures; ``response_delay`` slows
    every answer down. ``cpu_seconds`` is the thread CPU time spent in the stand-in's
    HTTP/2 handling (not the kernel's TLS or socket work).
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
        self._live: set[_ApnsServerProtocol] = set()
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
        self.cpu_seconds = 0.0

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("stand-in not started")
        return self._port

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, tls: bool = False) -> None:
        ssl_context = self._server_ssl_context(host) if tls else None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ApnsServerProtocol(self), host, port, ssl=ssl_context, backlog=1024
        )
        self.host = host
        self.tls = tls
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for connection in list(self._live):
            connection.abort()
        await self._server.wait_closed()
        self._server = None

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this stand-in's self-signed certificate."""
        if not self.cert_pem:
            raise RuntimeError("stand-in is not running with TLS")
        return ssl.create_default_context(cadata=self.cert_pem.decode())

    def _server_ssl_context(self, host: str) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName("localhost")]
        for address in {host, "127.0.0.1", "::1"}:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(address)))
            except ValueError:
                names.append(x509.DNSName(address))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mpaas APNs stand-in")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["h2"])
        with tempfile.TemporaryDirectory() as tmp:
            cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
            cert_file.write_bytes(self.cert_pem)
            key_file.write_bytes(key_pem)
            context.load_cert_chain(cert_file, key_file)
        return context

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

    def _decide(self, token: str, headers: Mapping[str, str], body: bytes) -> _Answer:
        authorization = headers.get("authorization")
        if authorization is None:
            return _Answer(403, "MissingProviderToken")
        scheme, _, bearer = authorization.partition(" ")
        if scheme.lower() != "bearer" or not self._bearer_ok(bearer):
            return _Answer(403, "InvalidProviderToken")
        self.bearer_tokens[bearer] += 1
        if not headers.get("apns-topic"):
            return _Answer(400, "MissingTopic")
        if len(body) > self.max_payload_bytes:
            return _Answer(413, "PayloadTooLarge")
        if not body:
            return _Answer(400, "PayloadEmpty")
        fault = self.faults.pick()
        if fault is not None:
            return _Answer(fault.status, fault.reason, retry_after=fault.retry_after)
        invalid_since = self.dead_tokens.get(token)
        if invalid_since is not None:
            return _Answer(410, "Unregistered", timestamp=invalid_since)
        if token in self.bad_tokens or not _HEX_RE.fullmatch(token):
            return _Answer(400, "BadDeviceToken")
        return _Answer(200)

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[str, _Answer]:
        """Decide the answer to one complete request; returns (apns-id, answer)."""
        apns_id = headers.get("apns-id") or str(uuid.uuid4())
        if headers.get(":method") != "POST":
            return apns_id, _Answer(405, "MethodNotAllowed")
        match = _PATH_RE.fullmatch(headers.get(":path", ""))
        if match is None:
            return apns_id, _Answer(404, "BadPath")
        token = match.group(1)
        try:
            uuid.UUID(apns_id)
        except ValueError:
            answer = _Answer(400, "BadMessageId")
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


class _ApnsServerProtocol(asyncio.Protocol):
    def __init__(self, standin: ApnsStandin) -> None:
        self.standin = standin
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.requests: dict[int, _Request] = {}
        #: Answers waiting for the client to open its receive window, in order.
        self.blocked: dict[int, bytes] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.standin.connections_accepted += 1
        self.standin._live.add(self)
        self.conn.initiate_connection()
        self.conn.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: self.standin.max_concurrent_streams})
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.standin._live.discard(self)
        self.transport = None

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        started = time.thread_time()
        try:
            events = self.conn.receive_data(data)
        except ProtocolError:
            self.flush()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self.requests[event.stream_id] = _Request(dict(event.headers))  # type: ignore[arg-type]
            elif isinstance(event, DataReceived):
                request = self.requests.get(event.stream_id)
                if request is not None and len(request.body) <= _MAX_REQUEST_BODY:
                    request.body += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                self.on_request(event.stream_id)
            elif isinstance(event, StreamReset):
                self.requests.pop(event.stream_id, None)
                self.blocked.pop(event.stream_id, None)
            elif isinstance(event, WindowUpdated):
                self.standin.window_updates_received += 1
                self.send_blocked()
            elif isinstance(event, ConnectionTerminated):
                self.flush()
                if self.transport is not None:
                    self.transport.close()
                return
        self.flush()
        self.standin.cpu_seconds += time.thread_time() - started

    def on_request(self, stream_id: int) -> None:
        request = self.requests.pop(stream_id, None)
        if request is None:
            return
        apns_id, answer = self.standin.handle(request.headers, bytes(request.body))
        delay = self.standin.response_delay
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self.respond_later, stream_id, apns_id, answer)
        else:
            self.respond(stream_id, apns_id, answer)

    def respond_later(self, stream_id: int, apns_id: str, answer: _Answer) -> None:
        self.respond(stream_id, apns_id, answer)
        self.flush()

    def respond(self, stream_id: int, apns_id: str, answer: _Answer) -> None:
        headers = [(":status", str(answer.status)), ("apns-id", apns_id)]
        body: bytes | None = None
        if answer.status != 200:
            error: dict[str, str | int] = {"reason": answer.reason or "InternalServerError"}
            if answer.timestamp is not None:
                error["timestamp"] = answer.timestamp
            body = json.dumps(error, separators=(",", ":")).encode()
            headers += [("content-type", "application/json"), ("content-length", str(len(body)))]
            if answer.retry_after is not None:
                headers.append(("retry-after", answer.retry_after))
        try:
            self.conn.send_headers(stream_id, headers, end_stream=body is None)
        except ProtocolError:
            return  # the client reset or the connection closed meanwhile
        if body is not None:
            if self.blocked or self.conn.local_flow_control_window(stream_id) < len(body):
                self.blocked[stream_id] = body
            else:
                self.conn.send_data(stream_id, body, end_stream=True)
                self.standin.response_body_bytes += len(body)

    def send_blocked(self) -> None:
        for stream_id in list(self.blocked):
            body = self.blocked[stream_id]
            try:
                if self.conn.local_flow_control_window(stream_id) < len(body):
                    return
                self.conn.send_data(stream_id, body, end_stream=True)
                self.standin.response_body_bytes += len(body)
            except ProtocolError:
                pass
            del self.blocked[stream_id]
