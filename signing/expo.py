"""Expo Updates code signing (protocol 1): the certificate, and ``expo-signature`` headers.

The app embeds a self-signed X.509 certificate; every signed multipart part (manifest,
directive) carries ``expo-signature: sig="<base64>", keyid="main", alg="rsa-v1_5-sha256"``,
an RSA PKCS#1 v1.5 SHA-256 signature over the exact part body. The client rejects the
certificate unless it is valid now, self-signed, and has the digitalSignature key usage
and the codeSigning extended key usage; :func:`check_expo_certificate` applies the same
rules so a bad certificate is refused at import, not on the phones.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mpaas.signing.errors import InvalidCertificate, KeyFileError
from mpaas.signing.keys import check_app_name, write_file_atomic, write_secret_file
from mpaas.signing.tuf_root import utcnow

http_sfv: ModuleType | None
try:  # RFC 8941 structured fields; a careful fallback below covers the subset Expo uses.
    import http_sfv
except ImportError:  # pragma: no cover - the fallback is tested by setting http_sfv to None
    http_sfv = None

EXPO_SIGNATURE_ALG = "rsa-v1_5-sha256"
DEFAULT_KEYID = "main"
RSA_KEY_BITS = 2048
DEFAULT_VALID_DAYS = 3650


# ------------------------------------------------------------------ certificate


def check_expo_certificate(cert: x509.Certificate, now: datetime | None = None) -> None:
    """Raise InvalidCertificate unless the Expo client would accept ``cert``."""
    now = now or utcnow()
    public_key = cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise InvalidCertificate("Expo code signing needs an RSA key (rsa-v1_5-sha256)")
    if public_key.key_size < RSA_KEY_BITS:
        raise InvalidCertificate(f"the RSA key must have at least {RSA_KEY_BITS} bits")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise InvalidCertificate("the certificate is not valid now")
    try:
        key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise InvalidCertificate(f"the certificate lacks an extension: {exc}") from None
    if not key_usage.digital_signature:
        raise InvalidCertificate("the certificate's key usage must include digitalSignature")
    if ExtendedKeyUsageOID.CODE_SIGNING not in extended:
        raise InvalidCertificate("the certificate's extended key usage must include codeSigning")
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        raise InvalidCertificate("the certificate must be self-signed") from None


def create_expo_certificate(
    app: str,
    key_path: Path,
    cert_path: Path,
    valid_days: int = DEFAULT_VALID_DAYS,
    *,
    common_name: str | None = None,
    now: Callable[[], datetime] = utcnow,
) -> x509.Certificate:
    """Create an RSA-2048 key (0600) and a self-signed code-signing certificate for ``app``."""
    check_app_name(app)
    if valid_days < 1:
        raise ValueError("valid_days must be at least 1")
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or f"{app} Expo code signing")])
    start = now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - timedelta(minutes=5))  # tolerate small clock skew on devices
        .not_valid_after(start + timedelta(days=valid_days))
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_pair(key, cert, key_path, cert_path)
    return cert


def import_expo_certificate(
    key_pem: bytes,
    cert_pem: bytes,
    key_path: Path,
    cert_path: Path,
    *,
    passphrase: bytes | None = None,
    now: Callable[[], datetime] = utcnow,
) -> x509.Certificate:
    """Validate an existing key and certificate (``expo-updates codesigning:generate``'s) and store them."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise InvalidCertificate("not a PEM X.509 certificate") from None
    check_expo_certificate(cert, now())
    try:
        key = serialization.load_pem_private_key(key_pem, passphrase)
    except (ValueError, TypeError) as exc:
        raise InvalidCertificate(f"cannot load the private key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.public_key().public_numbers() != (
        cert.public_key().public_numbers()  # type: ignore[union-attr]
    ):
        raise InvalidCertificate("the private key does not belong to the certificate")
    _write_pair(key, cert, key_path, cert_path)
    return cert


def _write_pair(key: rsa.RSAPrivateKey, cert: x509.Certificate, key_path: Path, cert_path: Path) -> None:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_secret_file(key_path, key_pem)
    try:
        write_file_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    except BaseException:
        key_path.unlink(missing_ok=True)
        raise


def load_expo_private_key(key_path: Path) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    except (OSError, ValueError, TypeError) as exc:
        raise KeyFileError(f"cannot load Expo signing key {key_path}: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyFileError(f"{key_path} is not an RSA key")
    return key


# ------------------------------------------------------------------ signature header


def sign_expo_part(body: bytes, private_key: rsa.RSAPrivateKey, keyid: str = DEFAULT_KEYID) -> str:
    """The ``expo-signature`` header value for one multipart part body."""
    signature = private_key.sign(body, padding.PKCS1v15(), hashes.SHA256())
    return serialize_signature_header(
        {"sig": base64.b64encode(signature).decode("ascii"), "keyid": keyid, "alg": EXPO_SIGNATURE_ALG}
    )


def verify_expo_signature(
    body: bytes,
    header_value: str,
    cert_pem: bytes,
    *,
    keyid: str | None = None,
    now: datetime | None = None,
) -> bool:
    """What the Expo client checks: a valid certificate and a matching signature over ``body``.

    ``keyid``, when given, must equal the header's (the client's configured key id).
    Any malformed input gives False.
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        check_expo_certificate(cert, now)
        fields = parse_signature_header(header_value)
        if fields.get("alg", EXPO_SIGNATURE_ALG) != EXPO_SIGNATURE_ALG:
            return False
        if keyid is not None and fields.get("keyid") != keyid:
            return False
        signature = base64.b64decode(fields["sig"], validate=True)
        public_key = cert.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):  # pragma: no cover - checked above
            return False
        public_key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
    except (ValueError, KeyError, binascii.Error, InvalidCertificate, InvalidSignature):
        return False
    return True


_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_STRING_CHARS = re.compile(r"[\x20-\x7e]*")


def serialize_signature_header(fields: dict[str, str]) -> str:
    """An RFC 8941 dictionary whose members are all strings (as Expo writes them)."""
    for key, value in fields.items():
        if not _KEY.fullmatch(key) or not _STRING_CHARS.fullmatch(value):
            raise ValueError(f"cannot serialise {key!r} as a structured-field string")
    if http_sfv is not None:
        dictionary = http_sfv.Dictionary()
        for key, value in fields.items():
            dictionary[key] = value
        return str(dictionary)
    return _serialize_fallback(fields)


def parse_signature_header(value: str) -> dict[str, str]:
    """Members of an RFC 8941 dictionary whose values are strings or tokens; parameters ignored."""
    if http_sfv is None:
        return _parse_fallback(value)
    dictionary = http_sfv.Dictionary()
    dictionary.parse(value.encode("ascii"))
    result: dict[str, str] = {}
    for key, member in dictionary.items():
        if isinstance(member, http_sfv.Item) and isinstance(member.value, bool):
            continue  # a bare key (``foo`` or ``foo=?1``): not a string member
        if not isinstance(member, http_sfv.Item) or not isinstance(member.value, str):
            raise ValueError(f"member {key!r} is not a string")
        result[key] = str(member.value)
    return result


def _serialize_fallback(fields: dict[str, str]) -> str:
    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return ", ".join(f"{key}={quote(value)}" for key, value in fields.items())


def _parse_fallback(value: str) -> dict[str, str]:
    """The RFC 8941 dictionary algorithm, restricted to string/token/boolean items."""
    text = value.strip(" ")
    pos = 0
    result: dict[str, str] = {}

    def bare_item() -> str | bool:
        nonlocal pos
        if text.startswith('"', pos):
            pos += 1
            out = []
            while pos < len(text):
                char = text[pos]
                pos += 1
                if char == "\\":
                    if pos >= len(text) or text[pos] not in '"\\':
                        raise ValueError("bad escape in string")
                    out.append(text[pos])
                    pos += 1
                elif char == '"':
                    return "".join(out)
                elif not " " <= char <= "~":
                    raise ValueError("invalid character in string")
                else:
                    out.append(char)
            raise ValueError("unterminated string")
        if text.startswith("?", pos) and text[pos + 1 : pos + 2] in ("0", "1"):
            pos += 2
            return text[pos - 1] == "1"
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ValueError("unsupported item type")
        pos = match.end()
        return match.group()

    def parameters() -> None:
        nonlocal pos
        while text.startswith(";", pos):
            pos += 1
            while text.startswith(" ", pos):
                pos += 1
            key = _KEY.match(text, pos)
            if key is None:
                raise ValueError("bad parameter key")
            pos = key.end()
            if text.startswith("=", pos):
                pos += 1
                bare_item()

    while True:
        key_match = _KEY.match(text, pos)
        if key_match is None:
            raise ValueError("bad dictionary key")
        pos = key_match.end()
        item: str | bool = True
        if text.startswith("=", pos):
            pos += 1
            if text.startswith("(", pos):
                raise ValueError("inner lists are not supported")
            item = bare_item()
        parameters()
        if isinstance(item, str):
            result[key_match.group()] = item
        else:
            result.pop(key_match.group(), None)
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos == len(text):
            return result
        if text[pos] != ",":
            raise ValueError("dictionary members must be separated by commas")
        pos += 1
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos == len(text):
            raise ValueError("trailing comma")
