"""The gateway's request signature: headers, the canonical signing string, and verification.

A gateway call is ``POST /gateway`` with a JSON body and these headers (docs/gateway.md
has the byte-by-byte rules and test vectors):

``X-Mgs-Operation``, ``X-Mgs-Version``, ``X-Mgs-App-Id``, ``X-Mgs-Device-Id``,
``X-Mgs-Session`` (optional), ``X-Mgs-Timestamp`` (Unix milliseconds), ``X-Mgs-Nonce`` and
``X-Mgs-Signature: alg=ALG;kid=KID;sig=BASE64``.

The signing string is eleven lines joined by LF (no trailing LF)::

    MGS1 / method / path / operation / version / app id / device id / session token /
    timestamp / nonce / lowercase hex sha256 of the body

Every part is validated with ``re.fullmatch`` before it is used, so no part can hold
an LF and smuggle another line. Two algorithms: ``hmac-sha256`` with the app's secret
(``kid`` names the app key) and ``ecdsa-p256-sha256`` with the device's key registered at
first launch (``kid`` is the key's fingerprint); ECDSA signatures are DER (what iOS
``SecKeyCreateSignature`` and Android ``SHA256withECDSA`` produce) or raw ``r||s`` (64 bytes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from multidict import istr

from mpaas.gateway.codes import GatewayError, ResultCode

SCHEME = "MGS1"
HMAC_SHA256 = "hmac-sha256"
ECDSA_P256 = "ecdsa-p256-sha256"
ALGORITHMS = (HMAC_SHA256, ECDSA_P256)

H_OPERATION = "X-Mgs-Operation"
H_VERSION = "X-Mgs-Version"
H_APP = "X-Mgs-App-Id"
H_DEVICE = "X-Mgs-Device-Id"
H_SESSION = "X-Mgs-Session"
H_TIMESTAMP = "X-Mgs-Timestamp"
H_NONCE = "X-Mgs-Nonce"
H_SIGNATURE = "X-Mgs-Signature"
_SIGNATURE_KEY = istr(H_SIGNATURE)

OPERATION_RE = re.compile(r"[a-z][a-z0-9_]{0,31}(?:\.[a-z][a-z0-9_]{0,31}){1,7}")
VERSION_RE = re.compile(r"[1-9][0-9]{0,3}")
APP_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
DEVICE_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")
SESSION_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")
TIMESTAMP_RE = re.compile(r"[1-9][0-9]{12}")
NONCE_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
KID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_B64_RE = re.compile(r"(?:[A-Za-z0-9+/]{4}){0,64}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_SIGNATURE_RE = re.compile(r"alg=([a-z0-9-]{1,32});kid=([^;]{1,64});sig=([^;]{1,400})")


#: Header names as multidict's case-folded keys, made once (a str key is folded on every lookup).
_FOLDED: dict[str, str] = {
    name: istr(name) for name in (H_OPERATION, H_VERSION, H_APP, H_DEVICE, H_SESSION, H_TIMESTAMP, H_NONCE)
}


class SignatureFormatError(ValueError):
    """The ``X-Mgs-Signature`` header does not follow its grammar."""


@dataclass(frozen=True)
class SignatureHeader:
    alg: str
    kid: str
    sig: bytes

    def format(self) -> str:
        return f"alg={self.alg};kid={self.kid};sig={base64.b64encode(self.sig).decode()}"


def parse_signature(value: str) -> SignatureHeader:
    """``alg=ALG;kid=KID;sig=BASE64`` in this order, standard base64 with padding, canonical.

    A header that parses has exactly one textual form: ``parse(v).format() == v``.
    """
    m = _SIGNATURE_RE.fullmatch(value)
    if m is None:
        raise SignatureFormatError("expected alg=ALG;kid=KID;sig=BASE64")
    alg, kid, sig_text = m.groups()
    if alg not in ALGORITHMS:
        raise SignatureFormatError(f"alg must be one of {', '.join(ALGORITHMS)}")
    if KID_RE.fullmatch(kid) is None:
        raise SignatureFormatError("kid must be 1-64 letters, digits, '_' or '-'")
    if not sig_text or _B64_RE.fullmatch(sig_text) is None:
        raise SignatureFormatError("sig must be standard base64 with padding")
    try:
        sig = base64.b64decode(sig_text, validate=True)
    except binascii.Error:
        raise SignatureFormatError("sig must be standard base64 with padding") from None
    if base64.b64encode(sig).decode() != sig_text:
        raise SignatureFormatError("sig is not canonical base64")
    return SignatureHeader(alg, kid, sig)


@dataclass(frozen=True)
class SignedRequest:
    """The signed parts of a gateway call, validated."""

    method: str
    path: str
    operation: str
    version: int
    app: str
    device: str
    session: str
    timestamp_ms: int
    nonce: str
    body_sha256: str
    signature: SignatureHeader

    def signing_string(self) -> bytes:
        return signing_string(
            self.method,
            self.path,
            self.operation,
            self.version,
            self.app,
            self.device,
            self.session,
            self.timestamp_ms,
            self.nonce,
            self.body_sha256,
        )


def signing_string(
    method: str,
    path: str,
    operation: str,
    version: int,
    app: str,
    device: str,
    session: str,
    timestamp_ms: int,
    nonce: str,
    body_sha256: str,
) -> bytes:
    """The canonical bytes that are signed (UTF-8; every part is ASCII once validated)."""
    parts = (
        SCHEME,
        method,
        path,
        operation,
        str(version),
        app,
        device,
        session,
        str(timestamp_ms),
        nonce,
        body_sha256,
    )
    return "\n".join(parts).encode()


def _header(headers: Mapping[str, str], name: str, pattern: re.Pattern[str], *, required: bool = True) -> str:
    value = headers.get(_FOLDED.get(name, name))
    if value is None or value == "":
        if required:
            raise GatewayError(ResultCode.INVALID_PARAMETERS, f"header {name} is required")
        return ""
    if pattern.fullmatch(value) is None:
        raise GatewayError(ResultCode.INVALID_PARAMETERS, f"header {name} is malformed")
    return value


def parse_request(method: str, path: str, headers: Mapping[str, str], body: bytes) -> SignedRequest:
    """Validate the gateway headers; 4001 for a missing or malformed one, 4002 for the signature."""
    operation = _header(headers, H_OPERATION, OPERATION_RE)
    version = int(_header(headers, H_VERSION, VERSION_RE))
    app = _header(headers, H_APP, APP_RE)
    device = _header(headers, H_DEVICE, DEVICE_RE)
    session = _header(headers, H_SESSION, SESSION_RE, required=False)
    timestamp_ms = int(_header(headers, H_TIMESTAMP, TIMESTAMP_RE))
    nonce = _header(headers, H_NONCE, NONCE_RE)
    raw_signature = headers.get(_SIGNATURE_KEY)
    if not raw_signature:
        raise GatewayError(ResultCode.SIGNATURE_INVALID, f"header {H_SIGNATURE} is required")
    try:
        signature = parse_signature(raw_signature)
    except SignatureFormatError as exc:
        raise GatewayError(ResultCode.SIGNATURE_INVALID, f"header {H_SIGNATURE}: {exc}") from None
    return SignedRequest(
        method,
        path,
        operation,
        version,
        app,
        device,
        session,
        timestamp_ms,
        nonce,
        hashlib.sha256(body).hexdigest(),
        signature,
    )


def hmac_signature(secret: bytes, message: bytes) -> bytes:
    return hmac.new(secret, message, hashlib.sha256).digest()


def verify_hmac(secret: bytes, message: bytes, sig: bytes) -> bool:
    return hmac.compare_digest(hmac_signature(secret, message), sig)


def verify_ecdsa(key: ec.EllipticCurvePublicKey, message: bytes, sig: bytes) -> bool:
    """DER, or raw ``r||s`` of 64 bytes (WebCrypto's form)."""
    if len(sig) == 64:
        sig = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        key.verify(sig, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def load_device_key(spki_der: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from its SubjectPublicKeyInfo DER; ValueError for anything else."""
    key = serialization.load_der_public_key(spki_der)
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the device key must be an ECDSA P-256 public key")
    return key


def key_fingerprint(spki_der: bytes) -> str:
    """The ``kid`` of a device key: the first 32 hex digits of sha256 over its SPKI DER."""
    return hashlib.sha256(spki_der).hexdigest()[:32]
