"""`mpaas packages …`, `mpaas diff` and `mpaas gc`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mpaas.cli.admin import paged
from mpaas.cli.client import ApiClient
from mpaas.cli.output import emit, emit_json, emit_record, emit_table, json_option

KIND = click.Choice(["offline", "bundle", "hotfix"])


def _fmt_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@click.group("packages")
def packages_group() -> None:
    """Published offline packages, bundles and hotfixes."""


@packages_group.command("list")
@click.option("--app", required=True, help="App name.")
@click.option("--kind", type=KIND, help="Only this kind.")
@click.option("--id", "package_id", help="Only this package id.")
@paged
@json_option
def packages_list(
    app: str, kind: str | None, package_id: str | None, limit: int, offset: int, as_json: bool
) -> None:
    """List package versions, newest first."""
    out = ApiClient().call(
        "GET",
        f"/api/v1/apps/{app}/packages",
        params={"kind": kind, "id": package_id, "limit": limit, "offset": offset},
    )
    emit(out, as_json, ["kind", "id", "version", "file_count", "size", "package_hash", "created_at"])


@packages_group.command("show")
@click.argument("package_id")
@click.argument("version")
@click.option("--app", required=True, help="App name.")
@click.option("--kind", type=KIND, help="Needed only when the id exists as several kinds.")
@click.option("--files", is_flag=True, help="Include the file manifest.")
@json_option
def packages_show(
    package_id: str, version: str, app: str, kind: str | None, files: bool, as_json: bool
) -> None:
    """Show one package version, its deltas and optionally its files."""
    out = ApiClient().call(
        "GET",
        f"/api/v1/apps/{app}/packages/{kind or 'any'}/{package_id}/{version}",
        params={"files": "1" if files else None},
    )
    if as_json:
        emit_json(out)
        return
    emit_record(
        out,
        [
            "kind",
            "id",
            "version",
            "package_hash",
            "codepush_hash",
            "archive_sha256",
            "size",
            "file_count",
            "meta",
            "signing",
            "created_by",
            "created_at",
        ],
    )
    click.echo("deltas:")
    emit_table(out["deltas"], ["from_version", "size", "patch_sha256"])
    if files:
        click.echo("files:")
        emit_table(out["files"], ["path", "size", "sha256"])


@packages_group.command("download")
@click.argument("package_id")
@click.argument("version")
@click.option("--app", required=True, help="App name.")
@click.option("--kind", type=KIND, help="Needed only when the id exists as several kinds.")
@click.option("--from", "from_version", help="Download the patch from this version instead of the full zip.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Where to write it.")
def packages_download(
    package_id: str, version: str, app: str, kind: str | None, from_version: str | None, output: Path
) -> None:
    """Download a package's full zip, or its patch from an earlier version."""
    base = f"/api/v1/apps/{app}/packages/{kind or 'any'}/{package_id}/{version}"
    path = f"{base}/deltas/{from_version}" if from_version else f"{base}/archive"
    data = ApiClient().call("GET", path)
    tmp = output.with_name(output.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(output)
    click.echo(f"wrote {output} ({_fmt_size(len(data))})", err=True)


@click.command("diff")
@click.argument("from_version")
@click.argument("to_version")
@click.option("--app", required=True, help="App name.")
@click.option("--id", "package_id", required=True, help="Package id.")
@click.option("--kind", type=KIND, help="Needed only when the id exists as several kinds.")
@click.option("--stats", is_flag=True, help="Only the summary, not every file.")
@json_option
def diff_cmd(
    from_version: str,
    to_version: str,
    app: str,
    package_id: str,
    kind: str | None,
    stats: bool,
    as_json: bool,
) -> None:
    """Show what changed between two versions, and the stored patch size."""
    out: dict[str, Any] = ApiClient().call(
        "GET",
        f"/api/v1/apps/{app}/packages/{kind or 'any'}/{package_id}/{to_version}/diff",
        params={"from": from_version},
    )
    if as_json:
        emit_json(_stats_only(out) if stats else out)
        return
    full = out["to"]["size"]
    known = out["changes"].get("payload_known", True)
    click.echo(f"{package_id} {from_version} -> {to_version}  (full zip {_fmt_size(full)})")
    rows = [
        {
            "change": k,
            "files": v["files"],
            "bytes": _fmt_size(v["file_bytes"]),
            "payload": _fmt_size(v["payload_bytes"]) if known and k != "unchanged" else "-",
        }
        for k, v in out["changes"]["summary"].items()
        if k != "codecs" and v["files"]
    ]
    emit_table(rows, ["change", "files", "bytes", "payload"])
    delta = out["delta"]
    if delta:
        click.echo(
            f"stored patch: {_fmt_size(delta['size'])} ({100 * delta['size'] / max(full, 1):.1f}% of full)"
        )
    else:
        click.echo(
            "stored patch: none (not among the last versions, or not smaller than the share limit); "
            "payload sizes are known only for a stored patch"
        )
    if not stats:
        emit_table(out["changes"]["files"], ["op", "path", "from", "size"])


def _stats_only(out: dict[str, Any]) -> dict[str, Any]:
    """``diff --stats --json``: the summary and the stored patch, not the file list."""
    changes = out["changes"]
    return {
        "from": out["from"]["version"],
        "to": out["to"]["version"],
        "full_size": out["to"]["size"],
        "summary": changes["summary"],
        "payload_known": changes.get("payload_known", True),
        "delta": out["delta"],
    }


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Report what would be deleted; delete nothing.")
@click.option(
    "--grace",
    type=click.IntRange(0),
    default=3600,
    show_default=True,
    help="Keep unreferenced blobs younger than this many seconds (uploads in flight).",
)
@json_option
def gc_cmd(dry_run: bool, grace: int, as_json: bool) -> None:
    """Delete stored blobs that nothing references, and expired or orphaned uploads."""
    out = ApiClient().call("POST", "/api/v1/gc", json_body={"dry_run": dry_run, "grace_seconds": grace})
    if as_json:
        emit_json(out)
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"scanned {out['scanned']} blobs: {out['referenced']} referenced, {out['kept_recent']} recent, "
        f"{verb} {out['deleted']} ({_fmt_size(out['freed_bytes'])})"
    )
    if "stale_uploads" in out:
        click.echo(
            f"uploads: {verb} {out['stale_uploads']} expired and {out['orphan_files']} orphaned "
            f"({_fmt_size(out['upload_bytes'])})"
        )
