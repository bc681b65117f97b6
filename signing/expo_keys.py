"""Each app's Expo code-signing key and certificate, kept in its online key directory.

The key is RSA (0600), the certificate is what the app embeds
(``updates.codeSigningCertificate``); :func:`mpaas.signing.expo.sign_expo_part` makes
the ``expo-signature`` header with the key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from mpaas.errors import NotFound
from mpaas.signing import expo
from mpaas.signing.errors import KeyFileError
from mpaas.signing.keys import app_key_dir
from mpaas.signing.tuf_root import utcnow

EXPO_KEY_FILE = "expo-signing.key.pem"
EXPO_CERT_FILE = "expo-signing.cert.pem"


class ExpoKeys:
    """The Expo key and certificate files of every app under one key directory."""

    def __init__(self, keys_dir: Path, *, now: Callable[[], datetime] = utcnow) -> None:
        self.keys_dir = keys_dir
        self._now = now

    def paths(self, app_name: str) -> tuple[Path, Path]:
        """(private key, certificate) of ``app_name``."""
        directory = app_key_dir(self.keys_dir, app_name)
        return directory / EXPO_KEY_FILE, directory / EXPO_CERT_FILE

    async def create(self, app_name: str, valid_days: int = expo.DEFAULT_VALID_DAYS) -> bytes:
        """Create the app's key (0600) and a self-signed certificate; returns the certificate PEM."""
        key_path, cert_path = self.paths(app_name)
        await asyncio.to_thread(
            expo.create_expo_certificate, app_name, key_path, cert_path, valid_days, now=self._now
        )
        return await asyncio.to_thread(cert_path.read_bytes)

    async def import_pair(self, app_name: str, key_pem: bytes, cert_pem: bytes) -> None:
        """Install a key and certificate made elsewhere, after the checks the Expo client makes."""
        key_path, cert_path = self.paths(app_name)
        await asyncio.to_thread(
            expo.import_expo_certificate, key_pem, cert_pem, key_path, cert_path, now=self._now
        )

    def certificate(self, app_name: str) -> bytes | None:
        """The certificate PEM to embed in the app, or None if the app has none."""
        _key, cert_path = self.paths(app_name)
        try:
            return cert_path.read_bytes()
        except FileNotFoundError:
            return None

    async def sign_part(self, app_name: str, body: bytes) -> str:
        """The ``expo-signature`` header value for one multipart part body."""
        key = await asyncio.to_thread(self._private_key, app_name)
        return await asyncio.to_thread(expo.sign_expo_part, body, key)

    def report(self, app_name: str) -> dict[str, Any] | None:
        """Fingerprint and expiry of the app's certificate, or None if it has none."""
        pem = self.certificate(app_name)
        if pem is None:
            return None
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise KeyFileError(f"{self.paths(app_name)[1]} is not a PEM certificate") from None
        return {
            "sha256_fingerprint": cert.fingerprint(hashes.SHA256()).hex(),
            "not_after": cert.not_valid_after_utc,
        }

    def _private_key(self, app_name: str) -> rsa.RSAPrivateKey:
        key_path, _cert = self.paths(app_name)
        if not key_path.exists():
            raise NotFound(
                f"{app_name} has no Expo signing key (run `mpaas keys expo-cert --app {app_name}`)",
                code="expo_signing_key_not_found",
            )
        return expo.load_expo_private_key(key_path)
