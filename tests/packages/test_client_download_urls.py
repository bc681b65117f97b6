"""Download URLs are signed and expire (ADR 0015): a blob is served only through a URL an
update answer handed out, so knowing a digest (of another app's package, or of a package
never released) is not enough; an expired or altered URL is 403 and says what to do."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from release_fixtures import bundle_files

from mpaas.appkeys import SETTINGS
from mpaas.packages.protocols.links import (
    KEY_FILE,
    DownloadUrlExpired,
    DownloadUrlInvalid,
    UrlSigner,
    load_or_create_secret,
    signature,
    signer_for,
)

Release = Callable[..., Awaitable[dict[str, Any]]]
CHECK = {"device_id": "d", "app_version": "1.0.0", "packages": [{"kind": "bundle", "id": "main"}]}
SHA = "ab" * 32


def local(url: str) -> str:
    """The path and query of an absolute URL, for the test client."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def error_code(resp: Any) -> tuple[int, str]:
    return resp.status, (await resp.json())["error"]["code"]


# ---------------------------------------------------------------- the signer alone


def test_urls_hold_for_the_ttl_and_are_one_per_window() -> None:
    clock = [1_000_000.0]
    signer = UrlSigner(b"k" * 32, ttl=600, window=100, now=lambda: clock[0])
    links = signer.links("https://m.example")
    url = links.url(SHA)
    q = query_of(url)
    assert url.startswith(f"https://m.example/client/v1/blobs/{SHA}?")
    assert int(q["expires"]) == 1_000_000 + 100 + 600  # the end of the window, plus the TTL
    assert re.fullmatch(r"[0-9a-f]{32}", q["sig"])
    clock[0] += 99  # same window: the very same URL (every process hands out the same one)
    assert signer.links("https://m.example").url(SHA) == url
    clock[0] += 1  # the next window: a later expiry
    assert int(query_of(signer.links("https://m.example").url(SHA))["expires"]) == int(q["expires"]) + 100
    # Valid for the whole TTL after it was last handed out; refused from its expiry on.
    clock[0] = 1_000_000 + 99 + 600
    signer.verify(SHA, q["expires"], q["sig"])
    clock[0] = float(q["expires"])
    with pytest.raises(DownloadUrlExpired):
        signer.verify(SHA, q["expires"], q["sig"])


@pytest.mark.parametrize(
    ("sha", "expires", "sig"),
    [
        ("cd" * 32, None, None),  # the signature of another blob
        (SHA, "9999999999", None),  # a later expiry with the old signature
        (SHA, None, "0" * 32),
        (SHA, None, "SIG"),
        (SHA, "", None),
        (SHA, "1e9", None),
        (SHA, None, ""),
    ],
)
def test_altered_urls_are_refused(sha: str, expires: str | None, sig: str | None) -> None:
    signer = UrlSigner(b"k" * 32, now=lambda: 0.0)
    q = query_of(signer.links("http://h").url(SHA))
    with pytest.raises(DownloadUrlInvalid):
        signer.verify(sha, q["expires"] if expires is None else expires, q["sig"] if sig is None else sig)
    with pytest.raises(DownloadUrlInvalid):  # missing parts
        signer.verify(SHA, None, q["sig"])
    other = UrlSigner(b"o" * 32, now=lambda: 0.0)  # another install's key
    with pytest.raises(DownloadUrlInvalid):
        other.verify(SHA, q["expires"], q["sig"])


def test_the_key_is_made_once_and_shared_by_processes(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path / "keys")
    assert len(first) == 32 and load_or_create_secret(tmp_path / "keys") == first
    assert (tmp_path / "keys" / KEY_FILE).stat().st_mode & 0o777 == 0o600
    clock = lambda: 5000.0  # noqa: E731
    a, b = UrlSigner(first, now=clock), UrlSigner(load_or_create_secret(tmp_path / "keys"), now=clock)
    assert a.links("http://h").url(SHA) == b.links("http://h").url(SHA)


# ---------------------------------------------------------------- over HTTP


async def _answer(client: Any, key: str) -> dict[str, Any]:
    resp = await client.post("/client/v1/updates", json=CHECK, headers={"X-Deployment-Key": key})
    assert resp.status == 200, await resp.text()
    return dict((await resp.json())["packages"][0])


async def test_only_handed_out_urls_download(
    client: Any, admin_headers: dict[str, str], bank: dict[str, str], publish: Any, release: Release
) -> None:
    await publish(bundle_files("1.0.0"), "1.0.0")
    await release("1.0.0")
    answer = await _answer(client, bank["production"])
    full, manifest = answer["full"], answer["manifest"]
    for item in (full, manifest):
        resp = await client.get(local(item["url"]))
        assert resp.status == 200, await resp.text()
        assert resp.headers["Cache-Control"].startswith("private")  # no shared cache past expiry
    sha = full["sha256"]
    q = query_of(full["url"])
    # The digest alone, as before ADR 0015: refused, and the answer says what to do.
    assert await error_code(await client.get(f"/client/v1/blobs/{sha}")) == (403, "download_url_invalid")
    # One blob's grant does not open another (the manifest), nor a later expiry.
    swapped = f"/client/v1/blobs/{manifest['sha256']}?expires={q['expires']}&sig={q['sig']}"
    assert await error_code(await client.get(swapped)) == (403, "download_url_invalid")
    later = f"/client/v1/blobs/{sha}?expires={int(q['expires']) + 1}&sig={q['sig']}"
    assert await error_code(await client.get(later)) == (403, "download_url_invalid")
    # A URL this install signed long ago has expired: the client must check again.
    secret = (Path(client.app[SETTINGS].keys_dir) / KEY_FILE).read_bytes()
    old = f"/client/v1/blobs/{sha}?expires=1000&sig={signature(secret, sha, 1000)}"
    assert await error_code(await client.get(old)) == (403, "download_url_expired")
    assert (await client.head(old)).status == 403  # HEAD checks the grant as GET does
    # A published but never released version's blob cannot be fetched by its digest.
    v2 = await publish(bundle_files("2.0.0"), "2.0.0")
    assert await error_code(await client.get(f"/client/v1/blobs/{v2['archive_sha256']}")) == (
        403,
        "download_url_invalid",
    )


@pytest.mark.parametrize("backend", ["sqlite"])  # the update index and the clock, no SQL
async def test_answers_and_etags_change_only_with_the_window(
    client: Any, bank: dict[str, str], publish: Any, release: Release
) -> None:
    await publish(bundle_files("1.0.0"), "1.0.0")
    await release("1.0.0")
    signer = signer_for(client.app[SETTINGS].keys_dir)
    clock = [float(600_000 * signer.window)]  # the start of a window
    signer.now = lambda: clock[0]  # the injected clock of the server's signer
    key = {"X-Deployment-Key": bank["production"]}

    async def check() -> tuple[str, str]:
        resp = await client.post("/client/v1/updates", json=CHECK, headers=key)
        return resp.headers["ETag"], (await resp.json())["packages"][0]["full"]["url"]

    etag, url = await check()
    clock[0] += signer.window - 1
    assert await check() == (etag, url)  # same window: same answer, so a 304 for the ETag
    again = await client.post("/client/v1/updates", json=CHECK, headers=key | {"If-None-Match": etag})
    assert again.status == 304
    clock[0] += 1
    etag2, url2 = await check()
    assert etag2 != etag and url2 != url
    assert int(query_of(url2)["expires"]) == int(query_of(url)["expires"]) + signer.window
    # Both URLs download while in time (the server's clock is the injected one).
    for u in (url, url2):
        assert (await client.get(local(u))).status == 200
    clock[0] = float(query_of(url)["expires"])
    assert await error_code(await client.get(local(url))) == (403, "download_url_expired")
    assert (await client.get(local(url2))).status == 200


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_codepush_and_expo_urls_are_signed(
    client: Any, bank: dict[str, str], publish: Any, release: Release
) -> None:
    await publish(bundle_files("1.0.0"), "1.0.0")
    await release("1.0.0")
    query = {"deployment_key": bank["production"], "app_version": "1.0.0"}
    resp = await client.get("/v0.1/public/codepush/update_check", params=query)
    url = (await resp.json())["update_info"]["download_url"]
    assert set(query_of(url)) == {"expires", "sig"}
    assert (await client.get(local(url))).status == 200
    bare = urlsplit(url).path
    assert await error_code(await client.get(bare)) == (403, "download_url_invalid")
