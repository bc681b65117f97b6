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
#: A well-formed signature header in one simple match (the hot path): the base64 is then
#: accepted only if it is canonical (it encodes back to itself), and 256 characters at most,
#: which is what _B64_RE admits. Anything else is parsed step by step by
#: :func:`parse_signature`, which says what is wrong.
_SIGNATURE_FAST_RE = re.compile(
    rf"alg=({HMAC_SHA256}|{ECDSA_P256});kid=({KID_RE.pattern});sig=([A-Za-z0-9+/]{{2,254}}={{0,2}})"
)
#: The six required headers and the session, joined by LF, in one match (the hot path). No
#: part's pattern admits an LF, so this matches exactly when every part matches its own.
_HEADERS_RE = re.compile(
    "\n".join(
        f"(?:{p.pattern})" for p in (OPERATION_RE, VERSION_RE, APP_RE, DEVICE_RE, TIMESTAMP_RE, NONCE_RE)
    )
    + f"\n(?:{SESSION_RE.pattern})?"
)


#: Header names as multidict's case-folded keys, made once (a str key is folded on every lookup).
_FOLDED: dict[str, str] = {
    name: istr(name) for name in (H_OPERATION, H_VERSION, H_APP, H_DEVICE, H_SESSION, H_TIMESTAMP, H_NONCE)
}
_K_OPERATION, _K_VERSION, _K_APP, _K_DEVICE, _K_SESSION, _K_TIMESTAMP, _K_NONCE = _FOLDED.values()


class SignatureFormatError(ValueError):
    """The ``X-Mgs-Signature`` header does not follow its grammar."""


# Hot-path records are plain slotted dataclasses: a frozen one costs about eight times as
# much to make (each field goes through object.__setattr__). Treat them as read-only.


@dataclass(slots=True)
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


@dataclass(slots=True)
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
    get = headers.get
    operation, version, app, device = get(_K_OPERATION), get(_K_VERSION), get(_K_APP), get(_K_DEVICE)
    timestamp, nonce, raw_signature = get(_K_TIMESTAMP), get(_K_NONCE), get(_SIGNATURE_KEY)
    if operation and version and app and device and timestamp and nonce and raw_signature:
        session = get(_K_SESSION) or ""
        text = f"{operation}\n{version}\n{app}\n{device}\n{timestamp}\n{nonce}\n{session}"
        fast = _SIGNATURE_FAST_RE.fullmatch(raw_signature)
        if fast is not None and _HEADERS_RE.fullmatch(text) is not None:
            alg, kid, sig_text = fast.groups()
            try:
                sig = binascii.a2b_base64(sig_text)
            except binascii.Error:
                sig = b""
            if sig and binascii.b2a_base64(sig, newline=False) == sig_text.encode():
                digest, signature = hashlib.sha256(body).hexdigest(), SignatureHeader(alg, kid, sig)
                return SignedRequest(
                    method, path, operation, int(version), app, device, session, int(timestamp), nonce,
                    digest, signature,
                )  # fmt: skip
    return _parse_request_slowly(method, path, headers, body)


def _parse_request_slowly(method: str, path: str, headers: Mapping[str, str], body: bytes) -> SignedRequest:
    """:func:`parse_request` one header at a time, for the refusal that names what is wrong."""
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


#: HMAC-SHA256 states with the key already absorbed, per secret: copying one costs about half
#: of keying a new one (OpenSSL looks the algorithm up and hashes both pads every time).
#: Only a speed-up: which secrets are valid is the key store's business. Bounded.
_PREPARED: dict[bytes, hmac.HMAC] = {}


def hmac_signature(secret: bytes, message: bytes) -> bytes:
    prepared = _PREPARED.get(secret)
    if prepared is None:
        if len(_PREPARED) >= 4096:
            _PREPARED.clear()
        prepared = _PREPARED[secret] = hmac.new(secret, digestmod=hashlib.sha256)
    mac = prepared.copy()
    mac.update(message)
    return mac.digest()


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
