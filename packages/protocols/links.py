"""Expiring signed download URLs for ``/client/v1/blobs/{sha256}`` (ADR 0015).

A blob is served only through a URL the server handed out in an update answer (native,
CodePush or Expo): ``…/client/v1/blobs/{sha256}?expires={unix}&sig={hex}``, where ``sig``
is the first 128 bits of ``HMAC-SHA256(secret, "mpaas-blob-url-v1\\n{sha256}\\n{expires}")``,
as S3 presigned URLs are. CodePush and Expo clients fetch URLs without custom headers,
so the grant travels in the URL, not in a deployment-key header.

``expires`` is rounded up to a whole window, so every server process hands out the same
URL for a blob within a window (answers, and their ETags, stay identical across
processes, and the native check's memo keeps its fragments for the window); a URL is
valid for at least ``ttl`` seconds after it is handed out.

The secret is 32 random bytes in ``<data dir>/keys/download-url.key`` (mode 0600), made
on first use; every server process of an install reads the same file. Removing it (and
restarting) revokes every URL handed out.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mpaas.errors import ConfigError, Forbidden
from mpaas.storage.keyfiles import load_or_create_key

KEY_FILE = "download-url.key"
#: A URL is valid at least this long after it is handed out (an SDK may wait for Wi-Fi).
TTL_SECONDS = 24 * 3600
#: ``expires`` is rounded up to a multiple of this: one URL per blob and window.
WINDOW_SECONDS = 3600
#: Hex digits of the signature: 128 bits of the HMAC.
SIG_HEX = 32
_SIG_RE = re.compile(f"[0-9a-f]{{{SIG_HEX}}}")
_EXPIRES_RE = re.compile(r"[0-9]{1,12}")
BLOB_PATH = "/client/v1/blobs/"
#: URLs memoised per window and base URL.
MAX_URLS = 8192


class DownloadUrlInvalid(Forbidden):
    """The URL carries no valid signature: it was not handed out by this install."""

    code = "download_url_invalid"


class DownloadUrlExpired(Forbidden):
    """The URL's signature is valid but its time is over: check for updates again."""

    code = "download_url_expired"


def signature(secret: bytes, sha256: str, expires: int) -> str:
    message = f"mpaas-blob-url-v1\n{sha256}\n{expires}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:SIG_HEX]


@dataclass(frozen=True, slots=True)
class BlobLinks:
    """Download URLs under one base URL and one expiry; hashable, so memos can key on it."""

    base_url: str
    expires: int
    secret: bytes = field(repr=False)
    #: ``expires|base_url``: what the native check's memos key on (a new window, a new key).
    key: str = field(init=False, repr=False)
    #: URLs made in this window (an HMAC is about 3 µs; Expo manifests list every asset).
    _urls: dict[str, str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.expires}|{self.base_url}")
        object.__setattr__(self, "_urls", {})

    def url(self, sha256: str) -> str:
        found = self._urls.get(sha256)
        if found is None:
            if len(self._urls) >= MAX_URLS:
                self._urls.clear()
            query = f"expires={self.expires}&sig={signature(self.secret, sha256, self.expires)}"
            found = self._urls[sha256] = f"{self.base_url}{BLOB_PATH}{sha256}?{query}"
        return found


class UrlSigner:
    """Hands out :class:`BlobLinks` and checks the URLs a client comes back with."""

    def __init__(
        self,
        secret: bytes,
        *,
        ttl: int = TTL_SECONDS,
        window: int = WINDOW_SECONDS,
        now: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) != 32:
            raise ConfigError(f"the download URL key must be 32 bytes, not {len(secret)}")
        self._secret, self.ttl, self.window, self.now = secret, ttl, window, now
        self._links: dict[str, BlobLinks] = {}

    def expires_at(self, now: float) -> int:
        """The ``expires`` handed out at ``now``: the end of the window, plus the TTL."""
        return (int(now) // self.window + 1) * self.window + self.ttl

    def links(self, base_url: str) -> BlobLinks:
        expires = self.expires_at(self.now())
        found = self._links.get(base_url)
        if found is None or found.expires != expires:
            if len(self._links) >= 64:  # distinct Host headers: keep the memo bounded
                self._links.clear()
            found = self._links[base_url] = BlobLinks(base_url, expires, self._secret)
        return found

    def verify(self, sha256: str, expires: str | None, sig: str | None) -> None:
        """Raise unless ``expires``/``sig`` are this install's signature of ``sha256``, in time."""
        if (
            expires is None
            or sig is None
            or _EXPIRES_RE.fullmatch(expires) is None
            or _SIG_RE.fullmatch(sig) is None
            or not hmac.compare_digest(sig, signature(self._secret, sha256, int(expires)))
        ):
            raise DownloadUrlInvalid(
                "this download URL is not signed by the server: use the URL of an update answer"
            )
        if int(expires) <= self.now():
            raise DownloadUrlExpired("this download URL has expired: check for updates again")


def load_or_create_secret(keys_dir: Path) -> bytes:
    """The install's download URL key, made atomically on first use (processes may race)."""
    return load_or_create_key(keys_dir, KEY_FILE)


_SIGNERS: dict[Path, UrlSigner] = {}


def signer_for(keys_dir: Path) -> UrlSigner:
    """The signer of the install whose keys live in ``keys_dir`` (loaded once per process)."""
    signer = _SIGNERS.get(keys_dir)
    if signer is None:
        signer = _SIGNERS[keys_dir] = UrlSigner(load_or_create_secret(keys_dir))
    return signer
