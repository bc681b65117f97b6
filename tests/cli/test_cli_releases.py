"""The release engineer's everyday path through the CLI: publish checks, delete, diff, patch,
promote, roll back to a chosen release, history."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

from mpaas.settings import Settings
from mpaas.signing.service_key import SIGNING
from tests_support import cli_in_process

Mpaas = Any  # the `mpaas` fixture of tests/cli/conftest.py


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def version_tree(tmp_path: Path, version: str) -> Path:
    """A bundle whose one big file changes a little per version (so a patch is kept)."""
    body = bytearray(random.Random(7).randbytes(40_000))
    body[100:110] = version.encode().ljust(10, b".")
    return write_tree(tmp_path / version, {"main.js": bytes(body), "static.txt": b"same" * 500})


async def test_publish_checks_signing_semver_order_then_delete_and_diff(
    mpaas: Mpaas, tmp_path: Path, client: Any, settings: Settings
) -> None:
    await mpaas("apps", "create", "bank", "--platform", "android", "--require-signing")

    def publish(version: str, *extra: str, code: int = 0) -> Any:
        return mpaas(
            "publish", str(version_tree(tmp_path, version)), "--app", "bank", "--kind", "bundle",
            "--id", "main", "--version", version, "-q", *extra, code=code,
        )  # fmt: skip

    refused = await publish("1.0.0", code=1)
    assert "signing_required" in refused.stderr and "HTTP 409" in refused.stderr
    assert "mpaas keys init --app bank" in refused.stderr
    await mpaas("apps", "update", "bank", "--no-require-signing")

    first = await publish("1.0.0")
    assert first.stdout.startswith("published: bundle main 1.0.0")
    assert "warning: NOT signed: app 'bank' has no TUF keys" in first.stderr
    shown = (await mpaas("packages", "show", "main", "1.0.0", "--app", "bank")).stdout
    assert "signing: NOT signed" in shown
    assert (
        json.loads((await mpaas("packages", "show", "main", "1.0.0", "--app", "bank", "--json")).stdout)[
            "signed"
        ]
        is False
    )

    nonsemver = await publish("build-7", code=1)
    assert "nonsemver_version" in nonsemver.stderr and "--allow-nonsemver" in nonsemver.stderr
    await publish("build-7", "--allow-nonsemver")

    await publish("1.2.0")
    lower = await publish("1.1.0")
    assert "warning: 1.1.0 is lower than 1.2.0, the latest version of bundle main" in lower.stderr
    assert "lower" not in (await publish("1.3.0")).stderr

    # delete: a mistaken upload goes; a released version stays
    await mpaas("packages", "delete", "main", "1.1.0", "--app", "bank", code=1)  # not confirmed
    await mpaas("packages", "show", "main", "1.1.0", "--app", "bank")
    deleted = await mpaas("packages", "delete", "main", "1.1.0", "--app", "bank", "--yes")
    assert "deleted bundle main 1.1.0" in deleted.stderr
    assert (
        "package_not_found"
        in (await mpaas("packages", "show", "main", "1.1.0", "--app", "bank", code=1)).stderr
    )
    await mpaas("release", "main", "1.2.0", "--app", "bank", "--channel", "staging")
    released = await mpaas("packages", "delete", "main", "1.2.0", "--app", "bank", "--yes", code=1)
    assert "package_released" in released.stderr and "roll it back" in released.stderr
    audit = json.loads((await mpaas("audit", "list", "--action", "package.delete", "--json")).stdout)
    assert [e["target"] for e in audit["items"]] == ["package:bank/bundle/main/1.1.0"]

    # diff --stats: a modified file's payload is the stored patch's, not 0 B
    stats = (await mpaas("diff", "1.2.0", "1.3.0", "--app", "bank", "--id", "main", "--stats")).stdout
    modified = next(line for line in stats.splitlines() if line.startswith("modified"))
    assert modified.split()[1] == "1" and not modified.endswith(" 0 B"), stats
    assert "main.js" not in stats  # --stats: no file list
    as_json = json.loads(
        (await mpaas("diff", "1.2.0", "1.3.0", "--app", "bank", "--id", "main", "--stats", "--json")).stdout
    )
    assert set(as_json) == {"from", "to", "full_size", "summary", "payload_known", "delta"}
    assert as_json["summary"]["modified"]["payload_bytes"] > 0 and as_json["payload_known"] is True

    # with TUF keys (an operator command on the server host), a signing app publishes again
    operator = {"MPAAS_DATA_DIR": str(settings.data_dir), "MPAAS_DATABASE_URL": settings.database_url}
    root = str(tmp_path / "root.pem")
    await asyncio.to_thread(
        cli_in_process, ["keys", "init", "--app", "bank", "--root-key-out", root], operator
    )
    await mpaas("apps", "update", "bank", "--require-signing")
    signed = await publish("1.4.0")
    assert "signed: TUF targets" in signed.stdout and "NOT signed" not in signed.stderr
    targets = await client.app[SIGNING].repo.list_targets("bank")
    assert "bundle/main/1.4.0/full.zip" in targets and "bundle/main/1.4.0/from-1.3.0.patch" in targets
    gone = json.loads(
        (await mpaas("packages", "delete", "main", "1.4.0", "--app", "bank", "--yes", "--json")).stdout
    )
    assert "bundle/main/1.4.0/full.zip" in gone["tuf_targets_removed"]
    assert not any(
        t.startswith("bundle/main/1.4.0/") for t in await client.app[SIGNING].repo.list_targets("bank")
    )


async def test_patch_promote_rollback_to_a_chosen_release_and_history(mpaas: Mpaas, publish: Any) -> None:
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        await publish({"index.android.bundle": f"// {version}".encode() * 50}, version)
    ids = []
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        out = await mpaas("release", "main", version, "--app", "bank", "--channel", "staging", "--json")
        ids.append(json.loads(out.stdout)["id"])
    first, _second, third = ids

    patched = json.loads(
        (
            await mpaas(
                "releases", "patch", str(third), "--app", "bank", "--description", "fixes login",
                "--mandatory", "--rollout", "20", "--json",
            )
        ).stdout
    )  # fmt: skip
    assert (patched["description"], patched["mandatory"], patched["rollout"]) == ("fixes login", True, 20.0)
    assert (
        "nothing to change" in (await mpaas("releases", "patch", str(third), "--app", "bank", code=2)).stderr
    )

    promoted = json.loads(
        (
            await mpaas(
                "releases", "promote", str(third), "--app", "bank", "--rollout", "5",
                "--description", "prod notes", "--json",
            )
        ).stdout
    )  # fmt: skip
    assert (promoted["channel"], promoted["rollout"], promoted["description"]) == (
        "production",
        5.0,
        "prod notes",
    )
    assert promoted["promoted_from"] == third and promoted["mandatory"] is True

    # --to an id that is no earlier release of the lineage: one clear line
    wrong = await mpaas(
        "releases", "rollback", "main", "--app", "bank", "--channel", "staging", "--to", "999", code=1
    )
    assert "not an earlier release" in wrong.stderr
    # the kind is inferred (bundle) as every other command does; --to skips the previous release
    back = json.loads(
        (
            await mpaas(
                "releases", "rollback", "main", "--app", "bank", "--channel", "staging",
                "--to", str(first), "--json",
            )
        ).stdout
    )  # fmt: skip
    assert (back["version"], back["rollback_of"], back["kind"]) == ("1.0.0", third, "bundle")

    history = (
        await mpaas("releases", "history", "--app", "bank", "--channel", "staging")
    ).stdout.splitlines()
    assert history[0].split()[:4] == ["ID", "LABEL", "KIND", "PACKAGE_ID"]
    assert f"rollback of {third}" in history[1] and "1.0.0" in history[1]
    assert "rolled_back" in history[2] and "1.2.0" in history[2]
    audit = json.loads((await mpaas("audit", "list", "--action", "release.patch", "--json")).stdout)
    assert audit["items"][0]["detail"]["after"] == {
        "description": "fixes login",
        "mandatory": True,
        "rollout_bp": 2000,
    }
