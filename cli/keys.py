"""`mpaas keys`: operator commands for an app's signing keys (TUF, Expo).

Like `mpaas init`, these run on the server host (or one sharing its database and data
directory): online keys are written 0600 under ``<data dir>/keys/<app>/``, and the
root private key goes only where the operator says, ideally removable media. The
running server picks up rotated keys by key id, without a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from mpaas.cli.errors import CliError
from mpaas.cli.operator import load_settings, migrate, open_data_dir, settings_options
from mpaas.cli.output import emit_json, emit_table, json_option
from mpaas.settings import Settings

T = TypeVar("T")
KEY_TYPES = click.Choice(["ecdsa", "ed25519"])
ROLES = click.Choice(["timestamp", "snapshot", "targets", "root"])


@asynccontextmanager
async def _service(settings: Settings) -> AsyncIterator[Any]:
    from mpaas.signing.ceremonies import KeyCeremonies
    from mpaas.signing.config import SigningConfig
    from mpaas.storage.db import Database

    db = Database(settings)
    try:
        yield KeyCeremonies(db, SigningConfig.from_settings(settings))
    finally:
        await db.close()


def _run(overrides: dict[str, Any], action: Callable[[Any], Awaitable[T]]) -> T:
    settings = load_settings(overrides)
    path = open_data_dir(settings)  # keys live under <data dir>/keys even on PostgreSQL
    click.echo(f"data directory: {path}", err=True)
    if settings.should_auto_migrate:
        migrate(settings)

    async def main() -> T:
        async with _service(settings) as service:
            return await action(service)

    return asyncio.run(main())


def _passphrase(ask: bool, prompt: str, *, confirm: bool = False) -> bytes | None:
    if not ask:
        return None
    return str(click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)).encode()


def _load_root(paths: tuple[Path, ...], ask: bool) -> list[Any]:
    from mpaas.signing.keys import load_root_signers

    if not paths:
        raise CliError("--root-key is required: a root change is signed by the current root key(s)", 2)
    return load_root_signers(list(paths), _passphrase(ask, "passphrase of the current root key(s)"))


@click.group("keys")
def keys_group() -> None:
    """Signing keys: TUF key ceremonies and rotation, Expo certificates (operator)."""


@keys_group.command("init")
@settings_options
@click.option("--app", "app_name", required=True, help="App name.")
@click.option("--type", "key_type", type=KEY_TYPES, help="Key type [env MPAAS_TUF_KEY_TYPE, default ecdsa].")
@click.option(
    "--root-key-out",
    "root_paths",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write a root private key (repeat for several root keys). Keep it offline.",
)
@click.option(
    "--root-threshold",
    type=click.IntRange(1, 16),
    help="Root keys needed to sign a new root [env MPAAS_TUF_ROOT_THRESHOLD, default 1].",
)
@click.option(
    "--encrypt-root", is_flag=True, help="Prompt for a passphrase that encrypts the root key files."
)
@click.option(
    "--root-metadata-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the signed 1.root.json here (to embed in the app as its pinned root).",
)
@json_option
def init_cmd(
    overrides: dict[str, Any],
    app_name: str,
    key_type: str | None,
    root_paths: tuple[Path, ...],
    root_threshold: int | None,
    encrypt_root: bool,
    root_metadata_out: Path | None,
    as_json: bool,
) -> None:
    """Create an app's TUF keys and repository; the root key goes to --root-key-out."""
    from tuf.api.metadata import Metadata, Root

    from mpaas.signing.keys import KeyType

    passphrase = _passphrase(encrypt_root, "passphrase for the new root key(s)", confirm=True)
    threshold = root_threshold or load_settings(overrides).tuf_root_threshold
    if threshold > len(root_paths):
        raise CliError(f"--root-threshold {threshold} needs at least {threshold} --root-key-out paths", 2)
    kt: KeyType | None = "ed25519" if key_type == "ed25519" else ("ecdsa" if key_type else None)
    root_raw: bytes = _run(
        overrides,
        lambda svc: svc.init_app(
            app_name, root_paths, key_type=kt, root_threshold=threshold, root_passphrase=passphrase
        ),
    )
    if root_metadata_out is not None:
        root_metadata_out.write_bytes(root_raw)
    root = Metadata[Root].from_bytes(root_raw).signed
    keyids = {role: list(r.keyids) for role, r in root.roles.items()}
    if as_json:
        emit_json({"app": app_name, "root_version": root.version, "keyids": keyids})
        return
    click.echo(f"created TUF keys for {app_name}; root key(s): {', '.join(map(str, root_paths))}", err=True)
    click.echo("store the root key(s) offline; the server does not need them", err=True)
    for role, ids in keyids.items():
        click.echo(f"{role}: {', '.join(ids)}")


@keys_group.command("list")
@settings_options
@click.option("--app", "app_name", help="Only this app.")
@json_option
def list_cmd(overrides: dict[str, Any], app_name: str | None, as_json: bool) -> None:
    """Show each app's TUF roles, key ids, thresholds and expiries (operator command)."""

    async def report(svc: Any) -> list[dict[str, Any]]:
        names = [app_name] if app_name else await svc.store.apps()
        return [await svc.key_report(name) for name in names]

    reports = _run(overrides, report)
    if as_json:
        emit_json({"items": reports})
        return
    rows = []
    for r in reports:
        for role in r["roles"]:
            for key in role["keys"]:
                rows.append(
                    {
                        "app": r["app"],
                        "role": role["role"],
                        "threshold": role["threshold"],
                        "keyid": key["keyid"][:16],
                        "scheme": key["scheme"],
                        "on_disk": {True: "yes", False: "MISSING"}.get(key.get("on_disk"), "offline"),
                    }
                )
    emit_table(rows, ["app", "role", "threshold", "keyid", "scheme", "on_disk"])
    for r in reports:
        click.echo(
            f"{r['app']}: root v{r['root_version']} expires {r['root_expires']:%Y-%m-%d}; "
            f"timestamp v{r['timestamp_version']} expires {r['timestamp_expires']:%Y-%m-%d %H:%M}Z; "
            f"expo certificate: {'yes' if r['expo_certificate'] else 'no'}",
            err=True,
        )


@keys_group.command("rotate")
@settings_options
@click.option("--app", "app_name", required=True, help="App name.")
@click.option("--role", required=True, type=ROLES, help="Role whose key(s) to replace.")
@click.option(
    "--root-key",
    "root_keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Current root private key (repeat up to the root threshold).",
)
@click.option(
    "--new-root-key-out",
    "new_root_paths",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="--role root: where to write each new root key (repeat for several).",
)
@click.option("--root-threshold", type=click.IntRange(1, 16), help="--role root: new root threshold.")
@click.option("--type", "key_type", type=KEY_TYPES, help="Type of the new key(s).")
@click.option("--ask-passphrase", is_flag=True, help="The current root key files are encrypted: prompt.")
@click.option("--encrypt-root", is_flag=True, help="--role root: encrypt the new root key files.")
@json_option
def rotate_cmd(
    overrides: dict[str, Any],
    app_name: str,
    role: str,
    root_keys: tuple[Path, ...],
    new_root_paths: tuple[Path, ...],
    root_threshold: int | None,
    key_type: str | None,
    ask_passphrase: bool,
    encrypt_root: bool,
    as_json: bool,
) -> None:
    """Replace a role's key; publishes root N+1, signed by the current root key(s)."""
    from mpaas.signing.keys import KeyType

    kt: KeyType | None = "ed25519" if key_type == "ed25519" else ("ecdsa" if key_type else None)
    old_root = _load_root(root_keys, ask_passphrase)
    if role == "root":
        if not new_root_paths:
            raise CliError("--role root needs --new-root-key-out PATH for each new root key", 2)
        passphrase = _passphrase(encrypt_root, "passphrase for the new root key(s)", confirm=True)
        version: int = _run(
            overrides,
            lambda svc: svc.rotate_root(
                app_name,
                old_root,
                new_root_paths,
                key_type=kt,
                threshold=root_threshold,
                root_passphrase=passphrase,
            ),
        )
    else:
        if new_root_paths or root_threshold:
            raise CliError("--new-root-key-out and --root-threshold only apply to --role root", 2)
        version = _run(overrides, lambda svc: svc.rotate_online_key(app_name, role, old_root, key_type=kt))
    if as_json:
        emit_json({"app": app_name, "role": role, "root_version": version})
        return
    click.echo(f"rotated the {role} key of {app_name}: published {version}.root.json")
    if role == "root":
        click.echo(
            "store the new root key(s) offline; keep the old ones until devices have updated", err=True
        )


@keys_group.command("expo-cert")
@settings_options
@click.option("--app", "app_name", required=True, help="App name.")
@click.option(
    "--import-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Import this RSA private key (PEM) instead of creating one.",
)
@click.option(
    "--import-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Import this certificate (PEM), e.g. from `npx expo-updates codesigning:generate`.",
)
@click.option("--valid-days", type=click.IntRange(1, 36500), default=3650, show_default=True)
def expo_cert_cmd(
    overrides: dict[str, Any],
    app_name: str,
    import_key: Path | None,
    import_cert: Path | None,
    valid_days: int,
) -> None:
    """Create (or import) the app's Expo code-signing key and certificate; print the certificate."""
    if (import_key is None) != (import_cert is None):
        raise CliError("--import-key and --import-cert go together", 2)
    if import_key is not None and import_cert is not None:
        key_pem, cert_pem = import_key.read_bytes(), import_cert.read_bytes()
        cert: bytes = _run(overrides, lambda svc: svc.import_expo_certificate(app_name, key_pem, cert_pem))
    else:
        cert = _run(overrides, lambda svc: svc.create_expo_certificate(app_name, valid_days=valid_days))
    click.echo("embed this certificate in the app (updates.codeSigningCertificate):", err=True)
    click.echo(cert.decode("ascii"), nl=False)
