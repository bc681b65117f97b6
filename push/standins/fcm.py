"""An FCM HTTP v1 stand-in (aiohttp) with the Google OAuth token endpoint it needs.

- ``POST /token``: the JWT-bearer grant google-auth sends for a service account
  (``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<RS256 JWT>``);
  the assertion is verified against keys registered by :meth:`FcmStandin.write_service_account`.
- ``POST /v1/projects/{project}/messages:send``: needs ``Authorization: Bearer`` with a
  token issued above; errors use Google's body format with an ``FcmError`` detail.

Point pyfcm at it with ``FCM_END_POINT_BASE = f"{base_url}/v1/projects"``; the token
endpoint comes from the service-account JSON's ``token_uri``.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mpaas.push.standins.faults import Fault, FaultPlan

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"

#: google.rpc.Code names for the HTTP statuses FCM answers with.
_RPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_TTL_RE = re.compile(r"\d{1,10}(\.\d{1,9})?s")


@dataclass(frozen=True)
class FcmRequestRecord:
    project: str
    token: str | None
    #: The ``message`` object; empty when the stand-in was told not to keep payloads.
    message: Mapping[str, Any]
    status: int
    access_token: str


def fcm_error(
    status: int,
    message: str,
    error_code: str | None = None,
    *,
    field_violation: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """An error body as Google returns it."""
    details: list[dict[str, Any]] = []
    if error_code is not None:
        details.append({"@type": FCM_ERROR_TYPE, "errorCode": error_code})
    if field_violation is not None:
        field, description = field_violation
        violation = {"field": field, "description": description}
        details.append({"@type": BAD_REQUEST_TYPE, "fieldViolations": [violation]})
    error: dict[str, Any] = {"code": status, "message": message, "status": _RPC_STATUS.get(status, "UNKNOWN")}
    if details:
        error["details"] = details
    return {"error": error}


def write_service_account(
    path: str | Path,
    *,
    token_uri: str,
    project_id: str = "mpaas-test",
    client_email: str | None = None,
) -> rsa.RSAPublicKey:
    """Write a service-account JSON with a fresh RSA key; returns the public key to verify grants."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = client_email or f"mpaas-push@{project_id}.iam.gserviceaccount.com"
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "client_email": email,
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
    }
    target = Path(path)
    target.write_text(json.dumps(info, indent=2), encoding="utf-8")
    target.chmod(0o600)
    return key.public_key()


class FcmStandin:
    """In-process FCM v1 + OAuth server with fault injection and counters.

    ``dead_tokens`` answer 404 UNREGISTERED; ``malformed_tokens`` answer 400
    INVALID_ARGUMENT with a ``message.token`` field violation, as FCM does for a token
    that is not a registration token. ``response_delay`` slows every send down (benchmarks);
    tests use :meth:`hold` / :meth:`release` and watch ``in_flight``.
    """

    def __init__(self, *, token_ttl: int = 3600, record_payloads: bool = True, seed: int = 0) -> None:
        self.token_ttl = token_ttl
        self.record_payloads = record_payloads
        self.faults = FaultPlan(seed)
        self.dead_tokens: set[str] = set()
        self.malformed_tokens: set[str] = set()
        self.response_delay = 0.0
        self.requests: list[FcmRequestRecord] = []
        self.by_token: Counter[str] = Counter()
        self.token_requests = 0
        self.issued_tokens: dict[str, float] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        #: Set while sends are held: each waits on it (counted in ``in_flight``) until release().
        self._held: asyncio.Event | None = None
        self.cpu_seconds = 0.0
        self._service_accounts: dict[str, rsa.RSAPublicKey] = {}
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        #: Where clients reach it; set by start(), or by whoever serves ``app`` (e.g. a test server).
        self.base_url: str | None = None
        self.app = web.Application()
        self.app.router.add_post("/token", self._token)
        self.app.router.add_post("/v1/projects/{project}/messages:send", self._send)

    # -- control -----------------------------------------------------------------------

    def inject(
        self,
        status: int,
        error_code: str,
        *,
        count: int | None = None,
        rate: float | None = None,
        retry_after: str | None = None,
    ) -> None:
        """Fail the next ``count`` sends, or a ``rate`` share of them, with this FCM error."""
        self.faults.inject(Fault(status, error_code, retry_after), count=count, rate=rate)

    def hold(self) -> None:
        """Keep every send unanswered from now on (it still counts as in flight) until :meth:`release`."""
        if self._held is None:
            self._held = asyncio.Event()

    def release(self) -> None:
        """Answer the held sends, and every later one at once."""
        held, self._held = self._held, None
        if held is not None:
            held.set()

    def revoke_tokens(self) -> None:
        """Forget every issued access token (the next sends get 401)."""
        self.issued_tokens.clear()

    def register_service_account(self, client_email: str, public_key: rsa.RSAPublicKey) -> None:
        self._service_accounts[client_email] = public_key

    def write_service_account(
        self, path: str | Path, *, base_url: str | None = None, project_id: str = "mpaas-test"
    ) -> Path:
        """Write a service-account JSON whose ``token_uri`` is this stand-in, and trust its key."""
        email = f"mpaas-push@{project_id}.iam.gserviceaccount.com"
        base = base_url or self.base_url
        if base is None:
            raise RuntimeError("stand-in has no base_url; start() it or pass base_url")
        token_uri = f"{base.rstrip('/')}/token"
        self.register_service_account(
            email, write_service_account(path, token_uri=token_uri, project_id=project_id, client_email=email)
        )
        return Path(path)

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("stand-in not started with start()")
        return self._port

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=1024)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        self.base_url = f"http://{f'[{host}]' if ':' in host else host}:{self._port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers ------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        started = time.thread_time()
        self.token_requests += 1
        try:
            if form.get("grant_type") != JWT_BEARER_GRANT:
                return _oauth_error("unsupported_grant_type", "expected the JWT bearer grant")
            assertion = form.get("assertion")
            if not isinstance(assertion, str):
                return _oauth_error("invalid_request", "missing assertion")
            try:
                claims = jwt.decode(assertion, options={"verify_signature": False})
                key = self._service_accounts.get(str(claims.get("iss")))
                if key is None:
                    return _oauth_error("invalid_grant", "unknown service account")
                jwt.decode(
                    assertion,
                    key,
                    algorithms=["RS256"],
                    options={"verify_aud": False, "require": ["iss", "aud", "iat", "exp"]},
                )
            except jwt.PyJWTError as exc:
                return _oauth_error("invalid_grant", f"invalid JWT signature or claims: {exc}")
            token = "ya29.standin-" + secrets.token_urlsafe(24)
            self.issued_tokens[token] = time.time() + self.token_ttl
            return web.json_response(
                {"access_token": token, "expires_in": self.token_ttl, "token_type": "Bearer"}
            )
        finally:
            self.cpu_seconds += time.thread_time() - started

    def _authorized(self, request: web.Request) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expiry = self.issued_tokens.get(token) if scheme.lower() == "bearer" else None
        if expiry is None or expiry < time.time():
            return None
        return token

    async def _send(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self._held is not None:
                await self._held.wait()
            if self.response_delay > 0:
                await asyncio.sleep(self.response_delay)
            raw = await request.read()
            started = time.thread_time()
            try:
                return self._answer(request, raw)
            finally:
                self.cpu_seconds += time.thread_time() - started
        finally:
            self.in_flight -= 1

    def _answer(self, request: web.Request, raw: bytes) -> web.Response:
        access_token = self._authorized(request)
        if access_token is None:
            return _error_response(
                fcm_error(
                    401, "Request had invalid authentication credentials. Expected OAuth 2 access token."
                )
            )
        project = request.match_info["project"]
        try:
            body = json.loads(raw)
        except ValueError:
            return _error_response(fcm_error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT"))
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict):
            return _error_response(
                fcm_error(400, "Request contains an invalid argument.", "INVALID_ARGUMENT")
            )
        token = message.get("token") if isinstance(message.get("token"), str) else None
        status, response = self._decide(project, message, token)
        if token is not None:
            self.by_token[token] += 1
        self.requests.append(
            FcmRequestRecord(
                project=project,
                token=token,
                message=message if self.record_payloads else {},
                status=status,
                access_token=access_token,
            )
        )
        return response

    def _decide(self, project: str, message: dict[str, Any], token: str | None) -> tuple[int, web.Response]:
        targets = [key for key in ("token", "topic", "condition") if key in message]
        if len(targets) != 1:
            return 400, _error_response(
                fcm_error(400, "Exactly one of token, topic or condition is required.", "INVALID_ARGUMENT")
            )
        invalid = _invalid_field(message)
        if invalid is not None:
            return 400, _error_response(
                fcm_error(
                    400,
                    f"Invalid value at '{invalid}'",
                    "INVALID_ARGUMENT",
                    field_violation=(invalid, "Invalid value"),
                )
            )
        fault = self.faults.pick()
        if fault is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
            return fault.status, _error_response(
                fcm_error(fault.status, f"Injected {fault.reason}", fault.reason), headers=headers
            )
        if token is not None and token in self.dead_tokens:
            return 404, _error_response(fcm_error(404, "Requested entity was not found.", "UNREGISTERED"))
        if token is not None and (token in self.malformed_tokens or not token.strip()):
            return 400, _error_response(
                fcm_error(
                    400,
                    "The registration token is not a valid FCM registration token",
                    "INVALID_ARGUMENT",
                    field_violation=("message.token", "Invalid registration token"),
                )
            )
        name = f"projects/{project}/messages/{secrets.randbits(63)}"
        return 200, web.json_response({"name": name})


def _invalid_field(message: Mapping[str, Any]) -> str | None:
    """The first field of ``message`` that FCM would refuse, for the checks we model."""
    data = message.get("data")
    if data is not None and (
        not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values())
    ):
        return "message.data"
    android = message.get("android")
    if android is not None:
        if not isinstance(android, dict):
            return "message.android"
        ttl = android.get("ttl")
        if ttl is not None and (not isinstance(ttl, str) or not _TTL_RE.fullmatch(ttl)):
            return "message.android.ttl"
        if android.get("priority", "NORMAL") not in ("NORMAL", "HIGH"):
            return "message.android.priority"
    return None


def _error_response(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=int(body["error"]["code"]), headers=headers)


def _oauth_error(error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=400)
