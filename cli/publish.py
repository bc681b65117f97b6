"""`mpaas publish`: package a directory or archive, upload it resumably, and publish it.

Uploads go in chunks to an upload session. The session id is remembered in the
user's cache directory, keyed by server, app and the archive's sha256, so running
the same command again after a lost connection continues from the server's offset
instead of starting over.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import click

from mpaas.cli.client import TIMEOUT, ApiClient
from mpaas.cli.errors import CliError
from mpaas.cli.output import emit_json

RETRIES = 5
STAGES = {"unpack": "verifying", "store": "storing files", "delta": "building deltas"}


def cache_dir() -> Path:
    base = (
        os.environ.get("MPAAS_CACHE_HOME") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    )
    return Path(base) / "mpaas" / "uploads"


@contextmanager
def archive_of(path: Path) -> Iterator[Path]:
    """The file to upload: a directory is zipped to a temp file; archives go as they are."""
    if path.is_dir():
        with tempfile.TemporaryDirectory(prefix="mpaas-publish-") as tmp:
            out = Path(tmp) / "package.zip"
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
                for file in sorted(p for p in path.rglob("*")):
                    if file.is_symlink():
                        raise CliError(f"{file} is a symlink; packages may not contain links")
                    if file.is_file():
                        zf.write(file, file.relative_to(path).as_posix())
            yield out
        return
    if not path.is_file():
        raise CliError(f"{path} is not a file or directory")
    yield path


@contextmanager
def codepush_signed(path: Path, private_key: Path | None) -> Iterator[tuple[Path, str | None]]:
    """(what to upload, the signed contentHash): PATH signed for CodePush when a key is given.

    Like the code-push CLI, the signature is made on this machine, so the private key
    never reaches the server. PATH (a directory or an archive) is unpacked with the
    server's own intake rules into a temp directory, which gets
    ``CodePush/.codepushrelease``; PATH itself is never modified.
    """
    if private_key is None:
        yield path, None
        return
    from mpaas.packages.intake.unpack import unpack
    from mpaas.packages.manifest import manifest_of_tree
    from mpaas.signing.codepush import sign_bundle_dir

    key_pem = private_key.read_bytes()
    with tempfile.TemporaryDirectory(prefix="mpaas-codepush-") as tmp:
        tree = Path(tmp) / "package"
        tree.mkdir()
        unpack(path, tree)
        content_hash = manifest_of_tree(tree).codepush_hash  # the hash the device computes
        sign_bundle_dir(tree, key_pem, content_hash)
        yield tree, content_hash


def file_digest(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


class Publisher:
    def __init__(self, client: ApiClient, app: str, *, quiet: bool) -> None:
        self.client = client
        self.app = app
        self.quiet = quiet

    def _state_file(self, digest: str) -> Path:
        key = hashlib.sha256(f"{self.client.target.server}|{self.app}|{digest}".encode()).hexdigest()[:32]
        return cache_dir() / f"{key}.json"

    async def upload(self, archive: Path, digest: str, size: int) -> str:
        state = self._state_file(digest)
        upload: dict[str, Any] | None = None
        if state.exists():
            try:
                saved_id = json.loads(state.read_text())["upload_id"]
                upload = await self.client.request("GET", f"/api/v1/apps/{self.app}/uploads/{saved_id}")
            except (CliError, ValueError, KeyError):
                upload = None
        if upload is None:
            upload = await self.client.request(
                "POST", f"/api/v1/apps/{self.app}/uploads", json_body={"size": size, "sha256": digest}
            )
            state.parent.mkdir(parents=True, exist_ok=True)
            state.write_text(json.dumps({"upload_id": upload["upload_id"]}))
        assert upload is not None
        upload_id: str = upload["upload_id"]
        offset: int = upload["offset"]
        chunk_size = min(int(upload["chunk_size"]), 8 << 20)
        with click.progressbar(length=size, label="uploading", hidden=self.quiet) as bar:
            bar.update(offset)
            with open(archive, "rb") as fh:
                while offset < size:
                    fh.seek(offset)
                    chunk = fh.read(chunk_size)
                    offset = await self._send_chunk(upload_id, offset, chunk)
                    bar.update(len(chunk))
        return upload_id

    async def _send_chunk(self, upload_id: str, offset: int, chunk: bytes) -> int:
        path = f"/api/v1/apps/{self.app}/uploads/{upload_id}/chunks"
        for attempt in range(RETRIES):
            try:
                result = await self.client.request(
                    "PUT",
                    path,
                    params={"offset": offset},
                    data=chunk,
                    headers={"Content-Type": "application/octet-stream"},
                )
                return int(result["offset"])
            except CliError as exc:
                if "upload_offset_mismatch" in str(exc):
                    status = await self.client.request("GET", f"/api/v1/apps/{self.app}/uploads/{upload_id}")
                    if int(status["offset"]) == offset + len(chunk):
                        return offset + len(chunk)
                if attempt == RETRIES - 1 or "cannot reach" not in str(exc):
                    raise
                await asyncio.sleep(min(2**attempt, 10))
        raise AssertionError("unreachable")

    async def publish(self, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.client.target.server}/api/v1/apps/{self.app}/packages"
        headers = self.client.headers() | {"Accept": "application/x-ndjson"}
        bars: dict[str, Any] = {}
        result: dict[str, Any] | None = None
        try:
            async with (
                aiohttp.ClientSession(timeout=TIMEOUT) as session,
                session.post(url, json=body, headers=headers) as resp,
            ):
                if resp.status >= 400:
                    raise self.client.error(resp.status, await resp.read())
                async for raw in resp.content:
                    line = json.loads(raw)
                    if "progress" in line:
                        self._progress(bars, line["progress"])
                    elif "error" in line:
                        raise self.client.error(int(line.get("status", 400)), json.dumps(line).encode())
                    else:
                        result = line["result"]
        except aiohttp.ClientConnectionError as exc:
            raise CliError(f"connection lost while publishing ({exc}); run the same command again") from None
        finally:
            for bar in bars.values():
                bar.render_finish()
        if result is None:
            raise CliError("the server closed the publish without a result; run the same command again")
        return result

    def _progress(self, bars: dict[str, Any], p: dict[str, Any]) -> None:
        if self.quiet or not p.get("total"):
            return
        stage = p["stage"]
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = click.progressbar(length=int(p["total"]), label=STAGES.get(stage, stage))
            bar.render_progress()
        bar.update(int(p["done"]) - bar.pos)


@click.command("publish")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--app", required=True, help="App name.")
@click.option(
    "--kind", required=True, type=click.Choice(["offline", "bundle", "hotfix"]), help="Artifact kind."
)
@click.option("--id", "package_id", required=True, help="Package id, e.g. transfer.")
@click.option("--version", "version", required=True, help="Version, e.g. 1.4.0.")
@click.option("--description", default="", help="Release notes.")
@click.option("--entry", help="offline: entry page (default index.html); bundle: entry file.")
@click.option("--vhost", help="offline: virtual host the app maps to the package, e.g. transfer.h5.bank.com.")
@click.option("--target-binary", "target_binary", help="hotfix/bundle: app binary range, e.g. '>=5.2 <6'.")
@click.option("--platform", type=click.Choice(["ios", "android"]), help="hotfix: platform.")
@click.option(
    "--patch-type", type=click.Choice(["dex", "so", "resource", "script"]), help="hotfix: patch type."
)
@click.option(
    "--codepush-private-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="bundle: sign for CodePush with this RSA key (PEM) before upload, as the code-push CLI does.",
)
@click.option(
    "--allow-nonsemver",
    is_flag=True,
    help="Accept a version that is not semver (MAJOR.MINOR.PATCH[-PRE]); it is then never ordered.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def publish_cmd(
    path: Path,
    app: str,
    kind: str,
    package_id: str,
    version: str,
    description: str,
    entry: str | None,
    vhost: str | None,
    target_binary: str | None,
    platform: str | None,
    patch_type: str | None,
    codepush_private_key: Path | None,
    allow_nonsemver: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Publish PATH (a directory, .zip or .tar.gz) as a package version.

    Safe to re-run: an interrupted upload resumes, and publishing identical content
    again answers with the existing version.
    """
    if codepush_private_key is not None and kind != "bundle":
        raise CliError("--codepush-private-key only applies to --kind bundle", exit_code=2)
    client = ApiClient()
    publisher = Publisher(client, app, quiet=quiet or as_json)
    with codepush_signed(path, codepush_private_key) as (source, signed_hash), archive_of(source) as archive:
        digest, size = file_digest(archive)

        async def run() -> dict[str, Any]:
            upload_id = await publisher.upload(archive, digest, size)
            body = {
                "upload_id": upload_id,
                "kind": kind,
                "id": package_id,
                "version": version,
                "description": description,
                "entry": entry,
                "vhost": vhost,
                "target_binary_range": target_binary,
                "platform": platform,
                "patch_type": patch_type,
                "allow_nonsemver": allow_nonsemver or None,
            }
            result = await publisher.publish({k: v for k, v in body.items() if v is not None})
            publisher._state_file(digest).unlink(missing_ok=True)
            return result

        result = asyncio.run(run())
    if signed_hash is not None and result["codepush_hash"] != signed_hash:
        raise CliError(
            f"the server computed package hash {result['codepush_hash']}, but the CodePush signature "
            f"covers {signed_hash}: devices would refuse this update"
        )
    if as_json:
        emit_json(
            {
                k: result[k]
                for k in (
                    "app",
                    "kind",
                    "id",
                    "version",
                    "package_hash",
                    "codepush_hash",
                    "size",
                    "file_count",
                    "created",
                )
            }
            | {
                "deltas": len(result["deltas"]),
                "warnings": result.get("warnings", []),
                "signed": result.get("signed"),
            }
        )
        return
    for warning in result.get("warnings", []):
        click.echo(f"warning: {warning}", err=True)
    verb = "published" if result["created"] else "already published (identical content)"
    click.echo(
        f"{verb}: {result['kind']} {result['id']} {result['version']}  hash {result['package_hash'][:12]}  "
        f"{result['file_count']} files, {result['size']} bytes, {len(result['deltas'])} deltas"
    )
    if result.get("signed") is False:
        click.echo(f"warning: {result['signing']}", err=True)
    elif "signing" in result:
        click.echo(result["signing"])
