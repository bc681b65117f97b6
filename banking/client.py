"""The reference client: signs and sends gateway calls the way an app SDK must.

It builds the signing string itself, from docs/gateway.md, rather than importing the
server's code, so a test that passes through it shows that a client written from the
documentation agrees with the server. Used by the tests and ``bench/gateway.py``.

``http`` is anything with aiohttp's ``post(url, data=, headers=)``: an
``aiohttp.ClientSession`` (with ``base`` the server URL) or the test client of
``pytest-aiohttp`` (with ``base`` empty).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from multidict import CIMultiDict

PATH = "/gateway"


def signing_string(
    operation: str,
    version: int,
    app: str,
    device: str,
    session: str,
    timestamp_ms: int,
    nonce: str,
    body: bytes,
    *,
    method: str = "POST",
    path: str = PATH,
) -> bytes:
    lines = [
        "MGS1",
        method,
        path,
        operation,
        str(version),
        app,
        device,
        session,
        str(timestamp_ms),
        nonce,
        hashlib.sha256(body).hexdigest(),
    ]
    return "\n".join(lines).encode("utf-8")


def new_nonce() -> str:
    return secrets.token_urlsafe(18)  # 24 characters, 144 bits


def new_device_id() -> str:
    return secrets.token_urlsafe(16)


@dataclass
class GatewayResult:
    status: int
    code: int
    result: Any = None
    error: dict[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.code == 1000


@dataclass
class GatewayClient:
    http: Any
    app: str
    device: str = field(default_factory=new_device_id)
    base: str = ""
    app_kid: str | None = None
    app_secret: bytes | None = None
    device_key: ec.EllipticCurvePrivateKey | None = None
    device_kid: str | None = None
    session: str | None = None
    clock: Callable[[], float] = time.time

    def headers(
        self,
        operation: str,
        version: int,
        body: bytes,
        *,
        nonce: str | None = None,
        timestamp_ms: int | None = None,
    ) -> dict[str, str]:
        ts = int(self.clock() * 1000) if timestamp_ms is None else timestamp_ms
        nonce = nonce or new_nonce()
        session = self.session or ""
        message = signing_string(operation, version, self.app, self.device, session, ts, nonce, body)
        if self.device_key is not None and self.device_kid is not None:
            sig = self.device_key.sign(message, ec.ECDSA(hashes.SHA256()))
            signature = f"alg=ecdsa-p256-sha256;kid={self.device_kid};sig={base64.b64encode(sig).decode()}"
        elif self.app_secret is not None and self.app_kid is not None:
            sig = hmac.new(self.app_secret, message, hashlib.sha256).digest()
            signature = f"alg=hmac-sha256;kid={self.app_kid};sig={base64.b64encode(sig).decode()}"
        else:
            raise ValueError("the client has neither a device key nor an app key")
        out = {
            "Content-Type": "application/json",
            "X-Mgs-Operation": operation,
            "X-Mgs-Version": str(version),
            "X-Mgs-App-Id": self.app,
            "X-Mgs-Device-Id": self.device,
            "X-Mgs-Timestamp": str(ts),
            "X-Mgs-Nonce": nonce,
            "X-Mgs-Signature": signature,
        }
        if session:
            out["X-Mgs-Session"] = session
        return out

    async def send(self, body: bytes, headers: Mapping[str, str]) -> GatewayResult:
        resp = await self.http.post(self.base + PATH, data=body, headers=dict(headers))
        async with resp:
            raw = await resp.read()
            data = json.loads(raw) if raw else {}
            return GatewayResult(
                resp.status,
                int(resp.headers.get("X-Mgs-Result-Code", data.get("result_code", 0))),
                data.get("result"),
                data.get("error"),
                CIMultiDict(resp.headers),
            )

    async def call(
        self, operation: str, params: Mapping[str, Any] | None = None, *, version: int = 1
    ) -> GatewayResult:
        """Sign and send; a result that carries a new ``session`` replaces the client's."""
        body = json.dumps(dict(params or {}), separators=(",", ":")).encode()
        result = await self.send(body, self.headers(operation, version, body))
        if result.ok and isinstance(result.result, dict) and isinstance(result.result.get("session"), str):
            self.session = result.result["session"]
        return result

    async def register_device_key(self) -> GatewayResult:
        """First launch: make a P-256 key, register it (HMAC-signed, with a proof), then use it."""
        key = self.device_key or ec.generate_private_key(ec.SECP256R1())
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        nonce = new_nonce()
        proof = key.sign(
            f"MGS1-DEVICE-KEY\n{self.app}\n{self.device}\n{nonce}".encode(), ec.ECDSA(hashes.SHA256())
        )
        params = {"public_key": base64.b64encode(der).decode(), "proof": base64.b64encode(proof).decode()}
        body = json.dumps(params, separators=(",", ":")).encode()
        saved, self.device_key = self.device_key, None  # the registration is signed with the app key
        result = await self.send(body, self.headers("mgs.device.register", 1, body, nonce=nonce))
        self.device_key = key if result.ok else saved
        if result.ok:
            self.device_kid = result.result["kid"]
        return result
