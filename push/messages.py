"""Messages: validation of what to send and to whom, creation, listing and localisation.

Creating a message writes one row; it does not touch devices. Workers expand it into
deliveries when it is due (see :mod:`mpaas.push.queue`), so a scheduled message reaches
the devices that match its audience at send time, not at creation time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func
from sqlmodel import col, select

from mpaas.identity.audit import Actor, record
from mpaas.identity.models import App
from mpaas.push.devices import DEVICE_ID_RE, LOCALE_RE, TAG_RE
from mpaas.push.errors import InvalidPushRequest, MessageNotFound
from mpaas.push.models import FALLBACKS, PushAppSettings, PushMessage
from mpaas.push.queue.expansion import audience_filter
from mpaas.push.queue.tables import DEVICES, execute
from mpaas.settings import Settings
from mpaas.storage.db import Database, utcnow

AUDIENCE_KINDS = ("devices", "users", "tags", "all")
MAX_AUDIENCE_VALUES = 1000
DEFAULT_TTL = 24 * 3600
#: FCM keeps messages at most 28 days; APNs has no documented limit but the same is sensible.
MAX_TTL = 28 * 24 * 3600
MAX_SCHEDULE_AHEAD = timedelta(days=60)
MAX_DATA_KEYS = 64
DEFAULT_ACK_TIMEOUT = 30
MAX_ACK_TIMEOUT = 24 * 3600
#: APNs' own key, and the prefix of the keys mpaas adds (delivery and message ids).
RESERVED_DATA_KEY, RESERVED_DATA_PREFIX = "aps", "mpaas"


@dataclass(frozen=True)
class MessageSpec:
    audience: dict[str, Any]
    title: str | None
    body: str | None
    locales: dict[str, dict[str, str]] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)
    ttl_seconds: int = DEFAULT_TTL
    priority: str = "high"
    push_type: str = "alert"
    collapse_id: str | None = None
    send_at: datetime | None = None
    fallback: str | None = None
    ack_timeout_seconds: int | None = None


def parse_time(value: str, name: str = "send_at") -> datetime:
    """ISO 8601; a time without an offset is UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidPushRequest(
            f"field {name!r} must be an ISO 8601 time, e.g. 2030-01-31T09:00:00Z"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _text(data: Mapping[str, Any], name: str, max_len: int) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise InvalidPushRequest(f"field {name!r} must be a string of at most {max_len} characters")
    return value


def _int(data: Mapping[str, Any], name: str, lo: int, hi: int) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise InvalidPushRequest(f"field {name!r} must be an integer between {lo} and {hi}")
    return value


def parse_audience(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or len(raw) != 1:
        raise InvalidPushRequest("field 'audience' must name exactly one of devices, users, tags or all")
    ((kind, values),) = raw.items()
    if kind not in AUDIENCE_KINDS:
        raise InvalidPushRequest(f"audience kind must be one of {', '.join(AUDIENCE_KINDS)}")
    if kind == "all":
        if values is not True:
            raise InvalidPushRequest("audience 'all' takes the value true")
        return {"all": True}
    if not isinstance(values, list) or not 1 <= len(values) <= MAX_AUDIENCE_VALUES:
        raise InvalidPushRequest(f"audience {kind!r} must be a list of 1-{MAX_AUDIENCE_VALUES} strings")
    pattern = {"devices": DEVICE_ID_RE, "tags": TAG_RE}.get(kind)
    for value in values:
        if not isinstance(value, str) or not value or len(value) > 128:
            raise InvalidPushRequest(f"audience {kind!r} values must be non-empty strings")
        if pattern is not None and not pattern.fullmatch(value):
            raise InvalidPushRequest(f"audience {kind!r} value {value!r} has an invalid format")
    return {kind: sorted(set(values))}


def parse_message_spec(data: Mapping[str, Any]) -> MessageSpec:
    title, body = _text(data, "title", 256), _text(data, "body", 2048)
    locales: dict[str, dict[str, str]] = {}
    raw_locales = data.get("locales") or {}
    if not isinstance(raw_locales, dict):
        raise InvalidPushRequest("field 'locales' must map a locale to {title, body}")
    for locale, variant in raw_locales.items():
        if not isinstance(locale, str) or not LOCALE_RE.fullmatch(locale) or not isinstance(variant, dict):
            raise InvalidPushRequest("field 'locales' must map a locale (e.g. de-CH) to {title, body}")
        entry = {k: v for k in ("title", "body") if (v := _text(variant, k, 2048)) is not None}
        locales[normalize_locale(locale)] = entry
    raw_data = data.get("data") or {}
    if not isinstance(raw_data, dict) or len(raw_data) > MAX_DATA_KEYS:
        raise InvalidPushRequest(f"field 'data' must be an object of at most {MAX_DATA_KEYS} string values")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in raw_data.items()):
        raise InvalidPushRequest("field 'data' values must be strings (FCM requires it)")
    if any(k == RESERVED_DATA_KEY or k.startswith(RESERVED_DATA_PREFIX) for k in raw_data):
        raise InvalidPushRequest("data key 'aps' and keys starting with 'mpaas' are reserved")
    priority = data.get("priority", "high")
    if priority not in ("high", "normal"):
        raise InvalidPushRequest("field 'priority' must be high or normal")
    push_type = data.get("push_type", "alert")
    if push_type not in ("alert", "background"):
        raise InvalidPushRequest("field 'push_type' must be alert or background")
    if push_type == "alert" and title is None and body is None and not locales:
        raise InvalidPushRequest("an alert needs a title or a body (or use push_type background)")
    fallback = data.get("fallback")
    if fallback is not None and fallback not in FALLBACKS:
        raise InvalidPushRequest(f"field 'fallback' must be one of {', '.join(FALLBACKS)}")
    ttl = _int(data, "ttl", 0, MAX_TTL)
    send_at_raw = data.get("send_at")
    if send_at_raw is not None and not isinstance(send_at_raw, str):
        raise InvalidPushRequest("field 'send_at' must be an ISO 8601 string")
    return MessageSpec(
        audience=parse_audience(data.get("audience")),
        title=title,
        body=body,
        locales=locales,
        data=dict(raw_data),
        ttl_seconds=DEFAULT_TTL if ttl is None else ttl,
        priority=priority,
        push_type=push_type,
        collapse_id=_text(data, "collapse_id", 64),
        send_at=parse_time(send_at_raw) if send_at_raw is not None else None,
        fallback=fallback,
        ack_timeout_seconds=_int(data, "ack_timeout", 1, MAX_ACK_TIMEOUT),
    )


def normalize_locale(locale: str) -> str:
    return locale.replace("_", "-").lower()


def localize(message: PushMessage, locale: str | None) -> tuple[str | None, str | None]:
    """(title, body) for a device locale: exact variant, then its language, then the default."""
    if locale and message.locales:
        wanted = normalize_locale(locale)
        variant = message.locales.get(wanted) or message.locales.get(wanted.split("-", 1)[0])
        if variant:
            return variant.get("title", message.title), variant.get("body", message.body)
    return message.title, message.body


async def app_settings(db: Database, app: App) -> PushAppSettings:
    assert app.id is not None
    async with db.session() as s:
        row = await s.get(PushAppSettings, app.id)
    return row or PushAppSettings(app_id=app.id, fallback="native", ack_timeout_seconds=DEFAULT_ACK_TIMEOUT)


async def update_app_settings(
    db: Database, actor: Actor, app: App, fallback: str | None, ack_timeout: int | None
) -> PushAppSettings:
    if fallback is not None and fallback not in FALLBACKS:
        raise InvalidPushRequest(f"fallback must be one of {', '.join(FALLBACKS)}")
    if ack_timeout is not None and not 1 <= ack_timeout <= MAX_ACK_TIMEOUT:
        raise InvalidPushRequest(f"ack_timeout must be between 1 and {MAX_ACK_TIMEOUT}")
    assert app.id is not None
    async with db.write() as s:
        row = await s.get(PushAppSettings, app.id) or PushAppSettings(app_id=app.id)
        if fallback is not None:
            row.fallback = fallback
        if ack_timeout is not None:
            row.ack_timeout_seconds = ack_timeout
        row.updated_at = utcnow()
        s.add(row)
        record(
            s,
            actor,
            "push.settings",
            f"app:{app.name}",
            app=app.name,
            detail={"fallback": row.fallback, "ack_timeout": row.ack_timeout_seconds},
        )
    return row


async def create_message(db: Database, actor: Actor, app: App, spec: MessageSpec) -> PushMessage:
    assert app.id is not None
    now = utcnow()
    send_at = max(spec.send_at or now, now)
    if send_at - now > MAX_SCHEDULE_AHEAD:
        raise InvalidPushRequest(f"send_at may be at most {MAX_SCHEDULE_AHEAD.days} days ahead")
    defaults = await app_settings(db, app)
    message = PushMessage(
        app_id=app.id,
        audience=spec.audience,
        title=spec.title,
        body=spec.body,
        locales=spec.locales,
        data=spec.data,
        priority=spec.priority,
        push_type=spec.push_type,
        collapse_id=spec.collapse_id,
        ttl_seconds=spec.ttl_seconds,
        send_at=send_at,
        expires_at=send_at + timedelta(seconds=spec.ttl_seconds),
        fallback=spec.fallback or defaults.fallback,
        ack_timeout_seconds=spec.ack_timeout_seconds or defaults.ack_timeout_seconds,
        created_by=actor.name,
    )
    async with db.write() as s:
        s.add(message)
        await s.flush()
        record(
            s,
            actor,
            "push.send",
            f"push_message:{message.id}",
            app=app.name,
            detail={"audience": spec.audience, "send_at": send_at.isoformat(), "ttl": spec.ttl_seconds},
        )
    return message


def configured_channels(settings: Settings) -> set[str]:
    """The channels this deployment can send on: the WebSocket, and each native one with credentials."""
    channels = {"ws"}
    if settings.apns_key_file:
        channels.add("apns")
    if settings.fcm_service_account:
        channels.add("fcm")
    return channels


PROVIDER_NAMES = {"apns": "APNs (MPAAS_APNS_KEY_FILE)", "fcm": "FCM (MPAAS_FCM_SERVICE_ACCOUNT)"}


async def send_warnings(db: Database, message: PushMessage, channels: set[str]) -> list[str]:
    """What a sender should know now: no device matches, or matching devices no provider reaches.

    The audience is resolved again when the message is due; a message that then reaches no
    one ends ``undeliverable`` (see :func:`mpaas.push.queue.expansion.expand_one_batch`).
    """
    matching = and_(DEVICES.c.app_id == message.app_id, DEVICES.c.enabled.is_(True), audience_filter(message))
    async with db.session() as s:
        rows = (
            await execute(
                s,
                select(DEVICES.c.provider, func.count()).where(matching).group_by(DEVICES.c.provider),
            )
        ).all()
    by_provider = {str(provider): int(count) for provider, count in rows}
    later = message.status == "scheduled" and message.send_at > utcnow() + timedelta(seconds=1)
    if not by_provider:
        if later:
            return ["no device matches the audience now; it is resolved again when the message is due"]
        return ["no device matches the audience: the message is undeliverable"]
    if message.fallback in ("ws", "ws_then_native"):
        return []  # the WebSocket goes first, and every device has it
    out = []
    for provider, count in sorted(by_provider.items()):
        if provider not in channels:
            then = " (the WebSocket fallback may reach them)" if message.fallback == "native_then_ws" else ""
            out.append(
                f"{count} matching device(s) use {provider}, but {PROVIDER_NAMES.get(provider, provider)} "
                f"is not configured on this server: their deliveries fail as no_provider{then}"
            )
    return out


async def get_message(db: Database, message_id: int, app: App | None = None) -> PushMessage:
    async with db.session() as s:
        row = await s.get(PushMessage, message_id)
    if row is None or (app is not None and row.app_id != app.id):
        raise MessageNotFound(f"push message {message_id} not found")
    return row


async def list_messages(db: Database, app: App, *, limit: int, offset: int) -> tuple[list[PushMessage], int]:
    async with db.session() as s:
        total = (
            await s.exec(select(func.count()).select_from(PushMessage).where(PushMessage.app_id == app.id))
        ).one()
        rows = (
            await s.exec(
                select(PushMessage)
                .where(PushMessage.app_id == app.id)
                .order_by(col(PushMessage.id).desc())
                .limit(limit)
                .offset(offset)
            )
        ).all()
    return list(rows), int(total)


def message_dict(m: PushMessage, app_name: str) -> dict[str, Any]:
    return {
        "id": m.id,
        "app": app_name,
        "audience": m.audience,
        "title": m.title,
        "body": m.body,
        "locales": m.locales,
        "data": m.data,
        "priority": m.priority,
        "push_type": m.push_type,
        "collapse_id": m.collapse_id,
        "ttl": m.ttl_seconds,
        "send_at": m.send_at,
        "expires_at": m.expires_at,
        "fallback": m.fallback,
        "ack_timeout": m.ack_timeout_seconds,
        "status": m.status,
        "created_by": m.created_by,
        "created_at": m.created_at,
    }
