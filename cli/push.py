"""`mpaas push …`: send and inspect push messages (admin API), and run a push worker (operator)."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from mpaas.cli.admin import paged
from mpaas.cli.client import ApiClient
from mpaas.cli.durations import duration_option_value
from mpaas.cli.errors import CliError
from mpaas.cli.operator import load_settings, migrate, open_data_dir, settings_options
from mpaas.cli.output import emit, emit_json, emit_record, emit_table, json_option

FALLBACKS = click.Choice(["native", "ws", "ws_then_native", "native_then_ws"])


def parse_at(value: str, now: datetime | None = None) -> str:
    """``+10m`` (from now) or an ISO 8601 time (UTC unless it has an offset) → ISO 8601 UTC."""
    now = now or datetime.now(UTC)
    text = value.strip()
    if text.startswith("+"):
        seconds = duration_option_value(text[1:], "--at", bare_seconds=True)
        return (now + timedelta(seconds=seconds)).isoformat()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time or +DURATION") from None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.isoformat()


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{what} {item!r} must be KEY=VALUE")
        out[key] = val
    return out


@click.group("push")
def push_group() -> None:
    """Push notifications: send, stats, list, and the delivery worker."""


@push_group.command("send")
@click.option("--app", required=True, help="App name.")
@click.option("--device", "devices", multiple=True, help="Device id (repeatable).")
@click.option("--user", "users", multiple=True, help="User id (repeatable).")
@click.option("--tag", "tags", multiple=True, help="Device tag (repeatable).")
@click.option("--all", "to_all", is_flag=True, help="Every registered device of the app.")
@click.option("--title", help="Notification title.")
@click.option("--body", help="Notification body.")
@click.option("--locale", "locales", multiple=True, help="Per-locale text: LOCALE=TITLE|BODY (repeatable).")
@click.option("--data", "data", multiple=True, help="Custom data KEY=VALUE (repeatable).")
@click.option("--at", "at", help="Send later: ISO 8601 time (UTC unless offset given) or +30m.")
@click.option("--ttl", default="1d", show_default=True, help="Give up after: 90, 30m, 1h, 2d.")
@click.option("--priority", type=click.Choice(["high", "normal"]), default="high", show_default=True)
@click.option("--background", is_flag=True, help="A silent (content-available / data-only) push.")
@click.option("--collapse-id", help="Newer pushes with the same id replace older ones on the device.")
@click.option("--fallback", type=FALLBACKS, help="Channel policy; default: the app's setting.")
@click.option(
    "--ack-timeout", type=click.IntRange(1), help="Seconds to wait for arrival before the fallback."
)
@json_option
def push_send(
    app: str,
    devices: tuple[str, ...],
    users: tuple[str, ...],
    tags: tuple[str, ...],
    to_all: bool,
    title: str | None,
    body: str | None,
    locales: tuple[str, ...],
    data: tuple[str, ...],
    at: str | None,
    ttl: str,
    priority: str,
    background: bool,
    collapse_id: str | None,
    fallback: str | None,
    ack_timeout: int | None,
    as_json: bool,
) -> None:
    """Send a push message (or schedule it with --at)."""
    chosen = [(k, list(v)) for k, v in (("devices", devices), ("users", users), ("tags", tags)) if v]
    if to_all:
        chosen.append(("all", True))  # type: ignore[arg-type]
    if len(chosen) != 1:
        raise CliError("choose exactly one audience: --device, --user, --tag or --all", exit_code=2)
    variants: dict[str, dict[str, str]] = {}
    for locale, text in _pairs(locales, "--locale").items():
        loc_title, _, loc_body = text.partition("|")
        variants[locale] = {"title": loc_title, "body": loc_body} if loc_body else {"title": loc_title}
    payload: dict[str, Any] = {
        "audience": dict(chosen),
        "title": title,
        "body": body,
        "locales": variants,
        "data": _pairs(data, "--data"),
        "ttl": duration_option_value(ttl, "--ttl", bare_seconds=True, zero=True),
        "priority": priority,
        "push_type": "background" if background else "alert",
        "collapse_id": collapse_id,
        "send_at": parse_at(at) if at else None,
        "fallback": fallback,
        "ack_timeout": ack_timeout,
    }
    payload = {k: v for k, v in payload.items() if v is not None}
    out = ApiClient().call("POST", f"/api/v1/apps/{app}/push/messages", json_body=payload)
    if as_json:
        emit_json(out)
        return
    click.echo(f"message {out['id']} {out['status']}: sends at {out['send_at']}, expires {out['expires_at']}")
    for warning in out.get("warnings") or []:
        click.echo(f"warning: {warning}", err=True)
    click.echo(out["id"])


def _print_stats(out: dict[str, Any]) -> None:
    stats = out["stats"]
    emit_record(out, ["id", "app", "status", "audience", "send_at", "expires_at", "fallback"])
    emit_record(
        stats,
        [
            "devices",
            "targeted",
            "sent",
            "failed",
            "pending",
            "arrived",
            "opened",
            "arrival_rate",
            "open_rate",
        ],
    )
    if stats["failed_by_reason"]:
        click.echo("failed by reason:")
        emit_table(
            [{"reason": k, "count": v} for k, v in stats["failed_by_reason"].items()], ["reason", "count"]
        )
    rows = [{"provider": name} | bucket for name, bucket in stats["providers"].items()]
    click.echo("per provider:")
    emit_table(
        rows, ["provider", "targeted", "sent", "failed", "pending", "arrived", "opened", "arrival_rate"]
    )


@push_group.command("stats")
@click.argument("message_id", type=click.IntRange(1))
@json_option
def push_stats(message_id: int, as_json: bool) -> None:
    """Delivery statistics of one message: targeted, sent, failed, pending, arrived, opened."""
    out = ApiClient().call("GET", f"/api/v1/push/messages/{message_id}")
    if as_json:
        emit_json(out)
        return
    _print_stats(out)


@push_group.command("list")
@click.option("--app", required=True, help="App name.")
@paged
@json_option
def push_list(app: str, limit: int, offset: int, as_json: bool) -> None:
    """List an app's push messages, newest first."""
    out = ApiClient().call(
        "GET", f"/api/v1/apps/{app}/push/messages", params={"limit": limit, "offset": offset}
    )
    emit(out, as_json, ["id", "status", "title", "audience", "send_at", "expires_at", "created_by"])


@push_group.command("worker")
@settings_options
def push_worker(overrides: dict[str, Any]) -> None:
    """Run a push delivery worker (operator command; run several for scale-out).

    It shares the queue in the database with the server's own worker and with other
    worker processes; stop it with SIGTERM or Ctrl-C (batches in flight finish first).
    """
    from mpaas.logs import setup_logging

    settings = load_settings(overrides)
    setup_logging(settings.log_level, as_json=settings.log_json)
    if settings.is_sqlite:
        open_data_dir(settings)
    if settings.should_auto_migrate:
        migrate(settings)
    asyncio.run(_run_worker(settings))


async def _run_worker(settings: Any) -> None:
    from mpaas.push.settings_providers import build_providers, worker_config
    from mpaas.push.worker import PushWorker, standalone_analytics
    from mpaas.storage.db import Database

    db = Database(settings)
    providers = build_providers(settings)
    worker = PushWorker(db, providers, worker_config(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    click.echo(
        f"push worker {worker.worker_id} running (providers: {', '.join(sorted(providers)) or 'none'})",
        err=True,
    )
    try:
        async with standalone_analytics(db):  # outcomes and sweeps emit analytics events (ADR 0011)
            worker.start()
            try:
                await stop.wait()
            finally:
                await worker.stop()
                await worker.close_providers()
    finally:
        await db.close()
    click.echo("push worker stopped", err=True)


@push_group.command("cancel")
@click.argument("message_id", type=click.IntRange(1))
@click.option("--app", required=True, help="App name.")
@json_option
def push_cancel(message_id: int, app: str, as_json: bool) -> None:
    """Cancel a scheduled or sending message; what is not yet sent is withdrawn."""
    out = ApiClient().call("POST", f"/api/v1/apps/{app}/push/messages/{message_id}/cancel")
    if as_json:
        emit_json(out)
        return
    click.echo(f"cancelled message {out['id']}: {out['withdrawn']} unsent deliveries withdrawn", err=True)


@click.group("devices")
def devices_group() -> None:
    """Devices registered for push."""


@devices_group.command("list")
@click.option("--app", required=True, help="App name.")
@click.option("--user", help="Only this user's devices.")
@click.option("--tag", help="Only devices with this tag.")
@click.option("--provider", type=click.Choice(["apns", "fcm", "ws"]), help="Only this native channel.")
@click.option("--enabled/--disabled", default=None, help="Only enabled (or disabled) devices.")
@paged
@json_option
def devices_list(
    app: str,
    user: str | None,
    tag: str | None,
    provider: str | None,
    enabled: bool | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List an app's registered devices (never their tokens)."""
    params = {
        "user": user,
        "tag": tag,
        "provider": provider,
        "enabled": None if enabled is None else str(enabled).lower(),
        "limit": limit,
        "offset": offset,
    }
    out = ApiClient().call("GET", f"/api/v1/apps/{app}/push/devices", params=params)
    emit(
        out,
        as_json,
        ["device_id", "provider", "user_id", "tags", "os", "app_version", "enabled", "registered_at"],
    )
