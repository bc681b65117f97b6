"""Settings: one frozen dataclass, read from ``MPAAS_*`` environment variables.

CLI flags override a few of them (``--host``, ``--port``, ``--data-dir``) by passing
``overrides`` to :meth:`Settings.from_env`. A bad value raises :class:`ConfigError`
with one line that names the variable, so the server fails at start-up, not later.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from mpaas.errors import ConfigError
from mpaas.settings_values import (
    PREFIX,
    bool_value,
    check_blob_url,
    float_value,
    int_value,
    mask_url,
    nats_url_value,
    normalize_database_url,
    public_url_value,
    rate_value,
    redis_url_value,
)

__all__ = ["PREFIX", "Settings", "mask_url", "normalize_database_url"]
# Shown as *** by `mpaas config show`: an explicit list (matching "key" in a name masked tuf_key_type).
SECRET_FIELDS = ("metrics_token",)
URL_NAMES = (
    "database_url",
    "blob_url",
    "s3_endpoint_url",
    "cdn_base_url",
    "redis_url",
    "nats_url",
    "analytics_url",
)


def analytics_url_value(value: Any) -> str | None:
    """The event store: None = DuckDB in the data directory, or ``clickhouse[s]://...``."""
    text = str(value or "").strip()
    if text and (re.fullmatch(r"clickhouses?://[^\s/]+(/[A-Za-z0-9_]*)?(\?\S*)?", text) is None):
        raise ConfigError(
            f"{PREFIX}ANALYTICS_URL={mask_url(text)!r} must be like clickhouse://user:password@host:8123/db"
        )
    return text or None


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".mpaas")
    database_url: str = ""
    blob_url: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    cdn_base_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 64 << 20
    upload_chunk_bytes: int = 8 << 20
    max_upload_bytes: int = 2 << 30
    max_package_entries: int = 20_000
    max_package_bytes: int = 1 << 30
    max_compression_ratio: float = 200.0
    delta_bases: int = 5
    delta_max_share: float = 0.5
    publish_concurrency: int = 2
    public_url: str | None = None
    release_poll_seconds: float = 2.0
    counter_flush_seconds: float = 5.0
    update_poll_interval: int = 300
    release_background: bool = True
    log_level: str = "INFO"
    log_json: bool = True
    metrics_token: str | None = None
    auto_migrate: bool | None = None
    apns_key_file: str | None = None
    apns_key_id: str | None = None
    apns_team_id: str | None = None
    apns_topic: str | None = None
    apns_sandbox: bool = False
    apns_endpoint: str | None = None
    apns_ca_file: str | None = None
    fcm_service_account: str | None = None
    fcm_endpoint: str | None = None
    push_worker: bool = True
    push_batch_size: int = 500
    push_concurrency: int = 2
    push_max_attempts: int = 10
    push_backoff_base: float = 1.0
    push_backoff_max: float = 600.0
    push_lease_seconds: int = 8
    push_heartbeat_seconds: float = 2.0
    push_claim_size: int = 100
    push_poll_interval: float = 1.0
    push_ws_heartbeat: float = 30.0
    tuf_key_type: str = "ecdsa"
    tuf_root_threshold: int = 1
    tuf_root_expiry_days: int = 365
    tuf_targets_expiry_days: int = 90
    tuf_snapshot_expiry_days: int = 7
    tuf_timestamp_expiry_hours: int = 24
    tuf_refresh_interval: int = 600
    tuf_refresh_within_hours: int = 12
    redis_url: str | None = None
    redis_prefix: str = "mpaas:"
    gateway_clock_skew: int = 300
    gateway_max_body_bytes: int = 64 << 10
    gateway_app_rate: str = "2000/s"
    gateway_device_rate: str = "20/s"
    gateway_user_rate: str = "20/s"
    gateway_cache_seconds: float = 5.0
    gateway_upstream_timeout: float = 5.0
    gateway_upstream_retries: int = 2
    gateway_breaker_failures: int = 5
    gateway_breaker_reset_seconds: float = 30.0
    banking_sms_provider: str = "console"
    banking_identity_verifier: str = "sandbox"
    banking_session_days: int = 30
    banking_poll_seconds: float = 2.0
    banking_timezone: str = "Asia/Shanghai"
    banking_limits_file: str | None = None
    banking_e_account_class: str = "II"
    banking_clearing_timeout_seconds: float = 900.0
    banking_sweep_seconds: float = 10.0
    risk_engine: str = "cel"
    risk_model_deadline_ms: int = 20
    nats_url: str | None = None
    analytics_nats_stream: str = "MPAAS_EVENTS"
    analytics_loader: bool = True
    analytics_load_interval: float = 1.0
    analytics_max_event_bytes: int = 32 * 1024
    analytics_max_batch_bytes: int = 500 * 1024
    analytics_spool_min_free_bytes: int = 1 << 30
    analytics_dedupe_days: int = 7
    analytics_url: str | None = None
    #: The lean ingest listener's port (analytics/ingest/listener.py); None: off, 0: any free port.
    ingest_port: int | None = None
    console_idle_minutes: int = 30
    console_max_hours: int = 12
    console_argon2_memory_kib: int = 65536
    trust_proxy: bool = False

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        env = os.environ if env is None else env
        raw: dict[str, Any] = {}
        for f in fields(cls):
            value = env.get(PREFIX + f.name.upper())
            if value is not None and value != "":
                raw[f.name] = value
        for key, value in (overrides or {}).items():
            if value is not None:
                raw[key] = value
        return cls._build(raw)

    @classmethod
    def _build(cls, raw: Mapping[str, Any]) -> Settings:
        data_dir = Path(raw.get("data_dir", ".mpaas")).expanduser()
        database_url = str(raw.get("database_url") or f"sqlite:///{(data_dir / 'mpaas.db').absolute()}")
        blob_url = str(raw.get("blob_url") or (data_dir / "blobs").absolute().as_uri())
        check_blob_url(blob_url)
        level = str(raw.get("log_level", "INFO")).upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"{PREFIX}LOG_LEVEL={level!r} must be DEBUG, INFO, WARNING or ERROR")

        def num(name: str, default: int, **kw: int) -> int:
            value = raw.get(name, default)
            return value if isinstance(value, int) else int_value(name, str(value), **kw)

        def real(name: str, default: float, *, minimum: float, maximum: float) -> float:
            value = raw.get(name, default)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            return float_value(name, str(value), minimum=minimum, maximum=maximum)

        def flag(name: str, default: bool | None) -> bool | None:
            value = raw.get(name, default)
            return value if value is None or isinstance(value, bool) else bool_value(name, str(value))

        settings = cls(
            data_dir=data_dir,
            database_url=normalize_database_url(database_url),
            blob_url=blob_url,
            s3_endpoint_url=raw.get("s3_endpoint_url"),
            s3_region=str(raw.get("s3_region", "us-east-1")),
            cdn_base_url=raw.get("cdn_base_url"),
            host=str(raw.get("host", "127.0.0.1")),
            port=num("port", 8080, minimum=0, maximum=65535),
            max_body_bytes=num("max_body_bytes", 64 << 20, minimum=1024),
            upload_chunk_bytes=num("upload_chunk_bytes", 8 << 20, minimum=1024),
            max_upload_bytes=num("max_upload_bytes", 2 << 30, minimum=1),
            max_package_entries=num("max_package_entries", 20_000, minimum=1),
            max_package_bytes=num("max_package_bytes", 1 << 30, minimum=1),
            max_compression_ratio=real("max_compression_ratio", 200.0, minimum=1.0, maximum=1e6),
            delta_bases=num("delta_bases", 5, minimum=0, maximum=50),
            delta_max_share=real("delta_max_share", 0.5, minimum=0.0, maximum=1.0),
            publish_concurrency=num("publish_concurrency", 2, minimum=1, maximum=64),
            public_url=public_url_value(raw.get("public_url")),
            release_poll_seconds=real("release_poll_seconds", 2.0, minimum=0.1, maximum=300.0),
            counter_flush_seconds=real("counter_flush_seconds", 5.0, minimum=0.1, maximum=3600.0),
            update_poll_interval=num("update_poll_interval", 300, minimum=10, maximum=86_400),
            release_background=bool(flag("release_background", True)),
            log_level=level,
            log_json=bool(flag("log_json", True)),
            metrics_token=raw.get("metrics_token"),
            auto_migrate=flag("auto_migrate", None),
            apns_key_file=raw.get("apns_key_file"),
            apns_key_id=raw.get("apns_key_id"),
            apns_team_id=raw.get("apns_team_id"),
            apns_topic=raw.get("apns_topic"),
            apns_sandbox=bool(flag("apns_sandbox", False)),
            apns_endpoint=raw.get("apns_endpoint"),
            apns_ca_file=raw.get("apns_ca_file"),
            fcm_service_account=raw.get("fcm_service_account"),
            fcm_endpoint=raw.get("fcm_endpoint"),
            push_worker=bool(flag("push_worker", True)),
            push_batch_size=num("push_batch_size", 500, minimum=1, maximum=10_000),
            push_concurrency=num("push_concurrency", 2, minimum=1, maximum=64),
            push_max_attempts=num("push_max_attempts", 10, minimum=1, maximum=1000),
            push_backoff_base=real("push_backoff_base", 1.0, minimum=0.001, maximum=3600.0),
            push_backoff_max=real("push_backoff_max", 600.0, minimum=0.001, maximum=86400.0),
            push_lease_seconds=num("push_lease_seconds", 8, minimum=1, maximum=86400),
            push_heartbeat_seconds=real("push_heartbeat_seconds", 2.0, minimum=0.05, maximum=3600.0),
            push_claim_size=num("push_claim_size", 100, minimum=1, maximum=10_000),
            push_poll_interval=real("push_poll_interval", 1.0, minimum=0.01, maximum=60.0),
            push_ws_heartbeat=real("push_ws_heartbeat", 30.0, minimum=0.1, maximum=3600.0),
            tuf_key_type=str(raw.get("tuf_key_type", "ecdsa")).lower(),
            tuf_root_threshold=num("tuf_root_threshold", 1, minimum=1, maximum=16),
            tuf_root_expiry_days=num("tuf_root_expiry_days", 365, minimum=1, maximum=3650),
            tuf_targets_expiry_days=num("tuf_targets_expiry_days", 90, minimum=1, maximum=3650),
            tuf_snapshot_expiry_days=num("tuf_snapshot_expiry_days", 7, minimum=1, maximum=3650),
            tuf_timestamp_expiry_hours=num("tuf_timestamp_expiry_hours", 24, minimum=2, maximum=24 * 365),
            tuf_refresh_interval=num("tuf_refresh_interval", 600, minimum=0, maximum=24 * 3600),
            tuf_refresh_within_hours=num("tuf_refresh_within_hours", 12, minimum=1, maximum=24 * 365),
            redis_url=redis_url_value(raw.get("redis_url")),
            redis_prefix=str(raw.get("redis_prefix", "mpaas:")),
            gateway_clock_skew=num("gateway_clock_skew", 300, minimum=10, maximum=3600),
            gateway_max_body_bytes=num("gateway_max_body_bytes", 64 << 10, minimum=1024, maximum=16 << 20),
            gateway_app_rate=rate_value("gateway_app_rate", raw.get("gateway_app_rate", "2000/s")),
            gateway_device_rate=rate_value("gateway_device_rate", raw.get("gateway_device_rate", "20/s")),
            gateway_user_rate=rate_value("gateway_user_rate", raw.get("gateway_user_rate", "20/s")),
            gateway_cache_seconds=real("gateway_cache_seconds", 5.0, minimum=0.0, maximum=300.0),
            gateway_upstream_timeout=real("gateway_upstream_timeout", 5.0, minimum=0.01, maximum=300.0),
            gateway_upstream_retries=num("gateway_upstream_retries", 2, minimum=0, maximum=10),
            gateway_breaker_failures=num("gateway_breaker_failures", 5, minimum=1, maximum=1000),
            gateway_breaker_reset_seconds=real(
                "gateway_breaker_reset_seconds", 30.0, minimum=0.01, maximum=3600.0
            ),
            banking_sms_provider=str(raw.get("banking_sms_provider", "console")),
            banking_identity_verifier=str(raw.get("banking_identity_verifier", "sandbox")),
            banking_session_days=num("banking_session_days", 30, minimum=1, maximum=365),
            banking_poll_seconds=real("banking_poll_seconds", 2.0, minimum=0.05, maximum=300.0),
            banking_timezone=str(raw.get("banking_timezone", "Asia/Shanghai")),
            banking_limits_file=raw.get("banking_limits_file"),
            banking_e_account_class=str(raw.get("banking_e_account_class", "II")),
            banking_clearing_timeout_seconds=real(
                "banking_clearing_timeout_seconds", 900.0, minimum=0.01, maximum=30 * 86400.0
            ),
            banking_sweep_seconds=real("banking_sweep_seconds", 10.0, minimum=0.01, maximum=3600.0),
            risk_engine=str(raw.get("risk_engine", "cel")).lower(),
            risk_model_deadline_ms=num("risk_model_deadline_ms", 20, minimum=1, maximum=10_000),
            nats_url=nats_url_value(raw.get("nats_url")),
            analytics_nats_stream=str(raw.get("analytics_nats_stream", "MPAAS_EVENTS")),
            analytics_loader=bool(flag("analytics_loader", True)),
            analytics_load_interval=real("analytics_load_interval", 1.0, minimum=0.01, maximum=3600.0),
            analytics_max_event_bytes=num("analytics_max_event_bytes", 32 * 1024, minimum=1024),
            analytics_max_batch_bytes=num("analytics_max_batch_bytes", 500 * 1024, minimum=1024),
            analytics_spool_min_free_bytes=num("analytics_spool_min_free_bytes", 1 << 30, minimum=0),
            analytics_dedupe_days=num("analytics_dedupe_days", 7, minimum=7, maximum=3650),
            analytics_url=analytics_url_value(raw.get("analytics_url")),
            ingest_port=None
            if raw.get("ingest_port") is None
            else num("ingest_port", 0, minimum=0, maximum=65535),
            console_idle_minutes=num("console_idle_minutes", 30, minimum=1, maximum=24 * 60),
            console_max_hours=num("console_max_hours", 12, minimum=1, maximum=24 * 30),
            console_argon2_memory_kib=num("console_argon2_memory_kib", 65536, minimum=1024, maximum=4 << 20),
            trust_proxy=bool(flag("trust_proxy", False)),
        )
        if settings.push_heartbeat_seconds >= settings.push_lease_seconds:
            raise ConfigError(
                f"{PREFIX}PUSH_HEARTBEAT_SECONDS must be shorter than {PREFIX}PUSH_LEASE_SECONDS "
                "(the heartbeat renews the lease before it runs out)"
            )
        if settings.risk_engine not in ("cel", "off"):
            raise ConfigError(f"{PREFIX}RISK_ENGINE={settings.risk_engine!r} must be cel or off")
        if settings.tuf_key_type not in ("ecdsa", "ed25519"):
            raise ConfigError(f"{PREFIX}TUF_KEY_TYPE={settings.tuf_key_type!r} must be ecdsa or ed25519")
        if settings.tuf_refresh_within_hours >= settings.tuf_timestamp_expiry_hours:
            raise ConfigError(
                f"{PREFIX}TUF_REFRESH_WITHIN_HOURS must be less than {PREFIX}TUF_TIMESTAMP_EXPIRY_HOURS "
                f"({settings.tuf_refresh_within_hours} >= {settings.tuf_timestamp_expiry_hours})"
            )
        if (
            settings.tuf_refresh_interval
            and settings.tuf_refresh_interval >= settings.tuf_refresh_within_hours * 3600
        ):
            raise ConfigError(
                f"{PREFIX}TUF_REFRESH_INTERVAL must be shorter than {PREFIX}TUF_REFRESH_WITHIN_HOURS, "
                "or metadata may expire between two runs"
            )
        return settings

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def should_auto_migrate(self) -> bool:
        """The embedded default upgrades itself; PostgreSQL waits for ``mpaas db upgrade``."""
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def display(self) -> dict[str, Any]:
        """Effective settings with secrets masked, for ``mpaas config show``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            if f.name in URL_NAMES and value:
                value = ",".join(mask_url(u) for u in str(value).split(","))
            elif value and f.name in SECRET_FIELDS:
                value = "***"
            out[f.name] = value
        return out
