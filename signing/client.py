"""The reference verifier: what a phone SDK does with mpaas's TUF repository.

It trusts a pinned root (bytes shipped in the app) on first use, then lets python-tuf's
unmodified ``ngclient.Updater`` walk the root chain (N+1, N+2, ...), and fetch and
check timestamp, snapshot and targets, and the target itself: signatures, thresholds,
versions (no rollback), expiry, lengths and hashes. Nothing here relaxes a TUF rule.

The API is synchronous, like ``Updater``; call it through ``asyncio.to_thread`` from
async code.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from tuf.api import exceptions
from tuf.api.metadata import TargetFile
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from mpaas.signing.errors import TargetNotFound

DEFAULT_CHUNK_SIZE = 64 * 1024
USER_AGENT = "mpaas-reference-client"


class UrllibFetcher(FetcherInterface):
    """A standard-library ``FetcherInterface`` (http and https only).

    ``Accept-Encoding: identity`` makes servers send the exact bytes whose length and
    hashes the metadata declares.
    """

    def __init__(
        self, timeout: float = 30.0, chunk_size: int = DEFAULT_CHUNK_SIZE, user_agent: str = USER_AGENT
    ) -> None:
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.user_agent = user_agent

    def _fetch(self, url: str) -> Iterator[bytes]:
        if urlsplit(url).scheme not in ("http", "https"):
            raise exceptions.DownloadError(f"refusing to fetch non-HTTP URL {url}")
        request = urllib.request.Request(
            url, headers={"User-Agent": self.user_agent, "Accept-Encoding": "identity"}
        )
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise exceptions.DownloadHTTPError(f"HTTP {exc.code} for {url}", exc.code) from None
        except TimeoutError as exc:
            raise exceptions.SlowRetrievalError(f"timed out fetching {url}") from exc
        return self._chunks(response)

    def _chunks(self, response: IO[bytes]) -> Iterator[bytes]:
        try:
            while chunk := response.read(self.chunk_size):
                yield chunk
        except TimeoutError as exc:
            raise exceptions.SlowRetrievalError("timed out while receiving data") from exc
        finally:
            response.close()


class MpaasUpdateClient:
    """Refresh metadata and download verified targets, as a device would.

    ``cache_dir`` keeps the trusted metadata between runs (``metadata/``) and the
    downloaded targets (``targets/``); the cached timestamp and snapshot are what stops
    a server from replaying older metadata to this client later.
    """

    def __init__(
        self,
        metadata_url: str,
        targets_url: str,
        trusted_root: bytes,
        cache_dir: Path,
        fetcher: FetcherInterface | None = None,
        config: UpdaterConfig | None = None,
    ) -> None:
        self._metadata_url = metadata_url
        self._targets_url = targets_url
        self._trusted_root = trusted_root
        self._metadata_dir = cache_dir / "metadata"
        self._targets_dir = cache_dir / "targets"
        self._fetcher = fetcher or UrllibFetcher()
        self._config = config
        self._updater: Updater | None = None
        self._metadata_dir.mkdir(parents=True, exist_ok=True)
        self._targets_dir.mkdir(parents=True, exist_ok=True)

    def refresh(self) -> None:
        """Fetch and verify root chain, timestamp, snapshot and targets.

        Raises python-tuf's ``RepositoryError`` subclasses (bad signature, rollback,
        expiry, hash mismatch...) and ``DownloadError`` exactly as ngclient does. Each
        call starts a new ``Updater`` (one refresh per Updater), so "now" is read anew.
        """
        self._updater = None
        updater = Updater(
            metadata_dir=str(self._metadata_dir),
            metadata_base_url=self._metadata_url,
            target_dir=str(self._targets_dir),
            target_base_url=self._targets_url,
            fetcher=self._fetcher,
            config=self._config,
            bootstrap=self._trusted_root,
        )
        updater.refresh()
        self._updater = updater

    def _refreshed(self) -> Updater:
        if self._updater is None:
            self.refresh()
        if self._updater is None:  # pragma: no cover - refresh() either sets it or raises
            raise RuntimeError("refresh did not complete")
        return self._updater

    def target_info(self, target_name: str) -> TargetFile:
        """The signed length, hashes and custom fields of a target (refreshing first if needed)."""
        info = self._refreshed().get_targetinfo(target_name)
        if info is None:
            raise TargetNotFound(f"no target named {target_name!r} in the signed targets")
        return info

    def download(self, target_name: str) -> Path:
        """Download (or reuse a verified cached copy of) a target; return its local path."""
        updater = self._refreshed()
        info = self.target_info(target_name)
        cached = updater.find_cached_target(info)
        if cached is not None:
            return Path(cached)
        return Path(updater.download_target(info))
