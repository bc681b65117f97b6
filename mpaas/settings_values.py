"""Parsers and checks for setting values: each error is one line that names the variable."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mpaas.errors import ConfigError

PREFIX = "MPAAS_"


def int_value(name: str, raw: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name.upper()}={raw!r} is not an integer") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{PREFIX}{name.upper()}={raw!r} must be {bound}")
    return value


def float_value(name: str, raw: str, *, minimum: float, maximum: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name.upper()}={raw!r} is not a number") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{PREFIX}{name.upper()}={raw!r} must be between {minimum} and {maximum}")
    return value


def bool_value(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{PREFIX}{name.upper()}={raw!r} is not a boolean (use true or false)")


def normalize_database_url(url: str) -> str:
    """Accept the URL forms operators use and return one for SQLAlchemy's async engine.

    ``postgresql://user@host:port/db`` (what psql and every PostgreSQL tool take) and
    ``postgres://`` become ``postgresql+asyncpg://``; ``sqlite:///path`` becomes
    ``sqlite+aiosqlite:///path``. URLs that already name a driver are checked and kept.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        if not parts.path.strip("/"):
            raise ConfigError(f"{PREFIX}DATABASE_URL names no database: {mask_url(url)}")
        return urlunsplit(("postgresql+asyncpg", *parts[1:]))
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        return "sqlite+aiosqlite:" + url.split(":", 1)[1]
    raise ConfigError(
        f"{PREFIX}DATABASE_URL scheme {parts.scheme!r} is not supported (use sqlite:/// or postgresql://)"
    )


def mask_url(url: str) -> str:
    """Hide the password of a URL for display."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit((parts.scheme, netloc, *parts[2:]))


def public_url_value(value: Any) -> str | None:
    """The base URL clients reach this server at (download links); None = from each request."""
    if value is None or value == "":
        return None
    parts = urlsplit(str(value))
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            f"{PREFIX}PUBLIC_URL={value!r} must be an http(s) URL such as https://updates.example.com"
        )
    return str(value).rstrip("/")


def redis_url_value(value: Any) -> str | None:
    """``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``); None = SQL instead."""
    if value is None or value == "":
        return None
    parts = urlsplit(str(value))
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.netloc or parts.path):
        raise ConfigError(f"{PREFIX}REDIS_URL={mask_url(str(value))!r} must be a redis:// or rediss:// URL")
    return str(value)


def nats_url_value(value: Any) -> str | None:
    """NATS server URLs, comma-separated for a cluster; None = the local file spool."""
    urls = [urlsplit(u.strip()) for u in str(value or "").split(",") if u.strip()]
    if any(u.scheme not in ("nats", "tls") or not u.netloc for u in urls):
        raise ConfigError(f"{PREFIX}NATS_URL={mask_url(str(value))!r} must be like nats://127.0.0.1:4222")
    return str(value) if urls else None


def rate_value(name: str, value: Any) -> str:
    """A token-bucket rate such as ``20/s``, ``600/m``, ``5/h`` or ``100/d`` (burst = the count)."""
    text = str(value).strip()
    if re.fullmatch(r"[1-9][0-9]{0,8}/[smhd]", text) is None:
        raise ConfigError(f"{PREFIX}{name.upper()}={text!r} must be COUNT/UNIT such as 20/s, 600/m or 5/h")
    return text


def check_blob_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "file":
        if not parts.path:
            raise ConfigError(f"{PREFIX}BLOB_URL={url!r} has no path")
        return
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ConfigError(f"{PREFIX}BLOB_URL={url!r} names no bucket (use s3://bucket/prefix)")
        return
    raise ConfigError(f"{PREFIX}BLOB_URL scheme {parts.scheme!r} is not supported (use file:// or s3://)")
