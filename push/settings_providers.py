"""Build the push providers and the worker configuration from :class:`mpaas.settings.Settings`.

Credentials are global (one APNs key and topic, one FCM project) for now; per-app
credentials would be looked up by the worker per message's app (see docs/push.md).
"""

from __future__ import annotations

import ssl
from datetime import timedelta
from urllib.parse import urlsplit

from mpaas.errors import ConfigError
from mpaas.push.providers.apns import ApnsEndpoint, ApnsProvider
from mpaas.push.providers.base import PushProvider
from mpaas.push.providers.fcm import DEFAULT_ENDPOINT_BASE, FcmProvider
from mpaas.push.queue.retry import RetryPolicy
from mpaas.push.worker import WorkerConfig
from mpaas.settings import Settings


def parse_apns_endpoint(value: str, ca_file: str | None = None) -> ApnsEndpoint:
    """``host:port`` or ``https://host:port`` (TLS), or ``http://host:port`` (cleartext HTTP/2, stand-ins)."""
    raw = value.strip()
    parts = urlsplit(raw if "://" in raw else f"https://{raw}")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(
            f"MPAAS_APNS_ENDPOINT={value!r} must be host:port, https://host:port or http://host:port"
        )
    try:
        port = parts.port or 443
    except ValueError:
        raise ConfigError(f"MPAAS_APNS_ENDPOINT={value!r} has an invalid port") from None
    tls = parts.scheme == "https"
    context = None
    if tls and ca_file:
        try:
            context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"MPAAS_APNS_CA_FILE={ca_file!r} is unusable: {exc}") from None
    return ApnsEndpoint(host=parts.hostname, port=port, tls=tls, ssl_context=context)


def fcm_endpoint_base(value: str | None) -> str:
    """The pyfcm endpoint base (``…/v1/projects``) from ``MPAAS_FCM_ENDPOINT`` (a base URL)."""
    if not value:
        return DEFAULT_ENDPOINT_BASE
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"MPAAS_FCM_ENDPOINT={value!r} must be an http(s) URL")
    base = value.strip().rstrip("/")
    return base if base.endswith("/v1/projects") else f"{base}/v1/projects"


def build_providers(settings: Settings) -> dict[str, PushProvider]:
    """The configured providers by channel name; a channel with no credentials is absent."""
    providers: dict[str, PushProvider] = {}
    if settings.apns_key_file:
        missing = [
            name
            for name, value in (
                ("MPAAS_APNS_KEY_ID", settings.apns_key_id),
                ("MPAAS_APNS_TEAM_ID", settings.apns_team_id),
                ("MPAAS_APNS_TOPIC", settings.apns_topic),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"MPAAS_APNS_KEY_FILE is set but {', '.join(missing)} is not")
        endpoint = (
            parse_apns_endpoint(settings.apns_endpoint, settings.apns_ca_file)
            if settings.apns_endpoint
            else None
        )
        try:
            providers["apns"] = ApnsProvider.from_key_file(
                settings.apns_key_file,
                key_id=str(settings.apns_key_id),
                team_id=str(settings.apns_team_id),
                topic=str(settings.apns_topic),
                use_sandbox=settings.apns_sandbox,
                endpoint=endpoint,
            )
        except OSError as exc:
            raise ConfigError(
                f"MPAAS_APNS_KEY_FILE={settings.apns_key_file!r} is unreadable: {exc}"
            ) from None
    if settings.fcm_service_account:
        providers["fcm"] = FcmProvider(
            service_account_file=settings.fcm_service_account,
            endpoint_base=fcm_endpoint_base(settings.fcm_endpoint),
        )
    return providers


def worker_config(settings: Settings) -> WorkerConfig:
    return WorkerConfig(
        batch_size=settings.push_batch_size,
        concurrency=settings.push_concurrency,
        lease=timedelta(seconds=settings.push_lease_seconds),
        poll_interval=settings.push_poll_interval,
        claim_size=settings.push_claim_size,
        heartbeat=timedelta(seconds=settings.push_heartbeat_seconds),
        policy=RetryPolicy(
            base_seconds=settings.push_backoff_base,
            max_seconds=settings.push_backoff_max,
            max_attempts=settings.push_max_attempts,
        ),
    )
