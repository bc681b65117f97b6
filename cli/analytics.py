"""`mpaas analytics …`: write keys and deletion requests (admin API), and the loader (operator)."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import click

from mpaas.cli.client import ApiClient
from mpaas.cli.durations import duration_option_value
from mpaas.cli.errors import CliError
from mpaas.cli.operator import load_settings, open_data_dir, settings_options
from mpaas.cli.output import emit, emit_json, emit_table, json_option


@click.group("analytics")
def analytics_group() -> None:
    """Analytics: Segment write keys, forgetting a user, and the event loader."""


@analytics_group.group("write-keys")
def write_keys_group() -> None:
    """Segment write keys of an app (the SDKs authenticate with them)."""


KEY_COLUMNS = ["id", "prefix", "label", "active", "expires_at", "created_at", "created_by"]


@write_keys_group.command("create")
@click.option("--app", required=True, help="App name.")
@click.option("--label", default="", help="What the key is for (e.g. ios, android).")
@json_option
def write_keys_create(app: str, label: str, as_json: bool) -> None:
    """Create a write key; it is printed once, on stdout."""
    out = ApiClient().call("POST", f"/api/v1/apps/{app}/analytics/write-keys", json_body={"label": label})
    if as_json:
        emit_json(out)
        return
    click.echo(
        f"write key {out['id']} for {app} (shown once; store it in the app's Segment config):", err=True
    )
    click.echo(out["write_key"])


@write_keys_group.command("list")
@click.option("--app", required=True, help="App name.")
@json_option
def write_keys_list(app: str, as_json: bool) -> None:
    """List an app's write keys (prefixes only)."""
    out = ApiClient().call("GET", f"/api/v1/apps/{app}/analytics/write-keys")
    emit_json(out) if as_json else emit_table(out["items"], KEY_COLUMNS)


@write_keys_group.command("rotate")
@click.option("--app", required=True, help="App name.")
@click.option(
    "--grace", default="7d", show_default=True, help="How long the old keys keep working: 0, 1h, 7d."
)
@click.option("--label", default="", help="Label of the new key.")
@json_option
def write_keys_rotate(app: str, grace: str, label: str, as_json: bool) -> None:
    """Make a new write key; the app's other keys expire after the grace period."""
    grace_seconds = duration_option_value(grace, "--grace", bare_seconds=True, zero=True)
    body = {"grace_seconds": grace_seconds, "label": label}
    out = ApiClient().call("POST", f"/api/v1/apps/{app}/analytics/write-keys/rotate", json_body=body)
    if as_json:
        emit_json(out)
        return
    click.echo(
        f"new write key {out['key']['id']}; {len(out['expiring'])} old key(s) expire after {grace}", err=True
    )
    click.echo(out["key"]["write_key"])


@analytics_group.command("forget")
@click.option("--user", "user_id", required=True, help="The user id whose events and identity links go.")
@click.option("--app", help="Only this app (default: every app).")
@click.option(
    "--wait", "wait_seconds", type=click.IntRange(0), default=0, help="Wait up to N s for the loader."
)
@json_option
def forget_cmd(user_id: str, app: str | None, wait_seconds: int, as_json: bool) -> None:
    """Delete a user's events and identity links (PIPL's right to deletion); audited.

    The request is recorded at once; the process that runs the loader carries it out
    on its next cycle, and events of the user still in the spool are never loaded.
    """
    client = ApiClient()
    out = client.call("POST", "/api/v1/analytics/forget", json_body={"user_id": user_id, "app": app})
    deadline = time.monotonic() + wait_seconds
    while wait_seconds and not out["done"] and time.monotonic() < deadline:
        time.sleep(0.5)
        out = client.call("GET", f"/api/v1/analytics/forget/{out['id']}")
    if wait_seconds and not out["done"]:
        raise CliError(f"forget request {out['id']} recorded but not yet carried out (is a loader running?)")
    emit(out, as_json)


@analytics_group.command("status")
@json_option
def status_cmd(as_json: bool) -> None:
    """The spool kind, and the loader's counters when the answering process runs it."""
    emit(ApiClient().call("GET", "/api/v1/analytics/status"), as_json)


@analytics_group.command("load")
@settings_options
@click.option("--once", is_flag=True, help="Load what the spool holds, then exit.")
@click.option(
    "--budget", type=click.IntRange(4096), default=32 << 20, show_default=True, help="Bytes per cycle."
)
@json_option
def load_cmd(overrides: dict[str, Any], once: bool, budget: int, as_json: bool) -> None:
    """Run the loader (operator): spool → DuckDB, as the only writer of the event store.

    Fails when another process (a server with MPAAS_ANALYTICS_LOADER on) holds the
    store's writer lock. Prints one line per cycle that loaded something.
    """
    settings = load_settings(overrides)
    if settings.is_sqlite:
        open_data_dir(settings)
    stats = asyncio.run(_load(settings, once, budget))
    if as_json:
        emit_json(stats)
    else:
        click.echo(f"loaded {stats['inserted']} new events of {stats['received']} read", err=True)


async def _load(settings: Any, once: bool, budget: int) -> dict[str, Any]:
    from mpaas.analytics.loader.lock import WriterLock
    from mpaas.analytics.runtime import make_loader, open_store, store_path
    from mpaas.storage.db import Database

    lock = WriterLock(store_path(settings).with_suffix(".duckdb.lock"))
    if not lock.try_acquire():
        raise CliError(f"another process (pid {lock.holder()}) is loading into {store_path(settings)}")
    db = Database(settings)
    store = open_store(settings)  # ClickHouse when MPAAS_ANALYTICS_URL names one
    loader = make_loader(settings, db, store)
    loader.budget = budget
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            seen = loader.stats.records
            more = await loader.run_once()
            if loader.stats.records != seen:
                click.echo(
                    f"cycle: {loader.stats.records - seen} records, {loader.stats.inserted} new events",
                    err=True,
                )
            if not more:
                if once:
                    break
                try:
                    await asyncio.wait_for(stop.wait(), timeout=settings.analytics_load_interval)
                except TimeoutError:
                    pass
    finally:
        await loader.close()  # a batch read ahead is dropped before its source closes
        await loader.source.close()
        store.close()
        await db.close()
        lock.release()
    return dict(vars(loader.stats))


@analytics_group.command("counts")
@settings_options
@click.option("--app", required=True, help="App name.")
@json_option
def counts_cmd(overrides: dict[str, Any], app: str, as_json: bool) -> None:
    """Events per name in the store (operator; needs the store's writer lock to be free)."""
    from mpaas.analytics.runtime import store_path
    from mpaas.analytics.store.duckdb import DuckDbStore

    settings = load_settings(overrides)
    path = store_path(settings)
    if not path.exists():
        raise CliError(f"no event store at {path} yet")
    try:
        store = DuckDbStore(path, read_only=True)
    except Exception as exc:  # duckdb.IOException: the loader holds the file
        raise CliError(f"cannot open {path}: {str(exc).splitlines()[0]}") from None
    try:
        counts = store.counts(app)
    finally:
        store.close()
    rows = [{"event": k, "count": v} for k, v in sorted(counts.items())]
    emit_json(counts) if as_json else emit_table(rows, ["event", "count"])
