"""Small rules of the push domain: backoff bounds, endpoint settings, CLI durations, input validation."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import click
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpaas.cli.durations import parse_duration
from mpaas.cli.push import parse_at
from mpaas.errors import ConfigError
from mpaas.push.devices import parse_device_spec
from mpaas.push.errors import InvalidPushRequest
from mpaas.push.messages import parse_message_spec
from mpaas.push.queue.retry import RetryPolicy
from mpaas.push.settings_providers import build_providers, fcm_endpoint_base, parse_apns_endpoint
from mpaas.settings import Settings


@settings(max_examples=200)
@given(
    attempts=st.integers(min_value=1, max_value=60),
    retry_after=st.none() | st.floats(min_value=0, max_value=3600),
    seed=st.integers(0, 2**32),
)
def test_backoff_is_full_jitter_capped_and_never_before_retry_after(
    attempts: int, retry_after: float | None, seed: int
) -> None:
    policy = RetryPolicy(base_seconds=0.5, max_seconds=30.0, max_attempts=10)
    delay = policy.delay(attempts, retry_after, random.Random(seed))
    assert delay >= (retry_after or 0.0)
    assert delay <= max(min(30.0, 0.5 * 2 ** (attempts - 1)), retry_after or 0.0)


@pytest.mark.parametrize(
    ("value", "host", "port", "tls"),
    [
        ("127.0.0.1:8443", "127.0.0.1", 8443, True),
        ("https://apns.example:2197", "apns.example", 2197, True),
        ("http://127.0.0.1:9000", "127.0.0.1", 9000, False),
        ("api.push.apple.com", "api.push.apple.com", 443, True),
    ],
)
def test_apns_endpoint_forms(value: str, host: str, port: int, tls: bool) -> None:
    endpoint = parse_apns_endpoint(value)
    assert (endpoint.host, endpoint.port, endpoint.tls) == (host, port, tls)


@pytest.mark.parametrize("value", ["ftp://x:1", "http://h:99999", "https://h/path"])
def test_bad_apns_endpoints_are_config_errors(value: str) -> None:
    with pytest.raises(ConfigError):
        parse_apns_endpoint(value)


def test_apns_key_without_its_companions_is_a_config_error(tmp_path: Any) -> None:
    s = Settings.from_env({"MPAAS_DATA_DIR": str(tmp_path), "MPAAS_APNS_KEY_FILE": str(tmp_path / "k.p8")})
    with pytest.raises(ConfigError, match="MPAAS_APNS_KEY_ID"):
        build_providers(s)
    assert fcm_endpoint_base("http://h:1/") == "http://h:1/v1/projects"


def test_push_settings_are_validated(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="MPAAS_PUSH_BATCH_SIZE"):
        Settings.from_env({"MPAAS_DATA_DIR": str(tmp_path), "MPAAS_PUSH_BATCH_SIZE": "0"})
    with pytest.raises(ConfigError, match="MPAAS_PUSH_WORKER"):
        Settings.from_env({"MPAAS_DATA_DIR": str(tmp_path), "MPAAS_PUSH_WORKER": "sometimes"})
    with pytest.raises(ConfigError, match="MPAAS_PUSH_HEARTBEAT_SECONDS must be shorter"):
        Settings.from_env({"MPAAS_DATA_DIR": str(tmp_path), "MPAAS_PUSH_LEASE_SECONDS": "2"})
    with pytest.raises(ConfigError, match="MPAAS_PUSH_CLAIM_SIZE"):
        Settings.from_env({"MPAAS_DATA_DIR": str(tmp_path), "MPAAS_PUSH_CLAIM_SIZE": "0"})


def test_cli_durations_and_times() -> None:
    spans = ("90", "45s", "30m", "1h", "2d", "1w")
    assert [parse_duration(v, bare_seconds=True) for v in spans] == [90, 45, 1800, 3600, 172800, 604800]
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_at("+10m", now) == "2030-01-01T00:10:00+00:00"
    assert parse_at("2030-01-02T09:00:00+01:00") == "2030-01-02T08:00:00+00:00"


def test_a_huge_at_is_a_bad_parameter_not_an_overflow() -> None:
    """Regression: ``\\d+`` let ``+99999999999999999999d`` reach timedelta (OverflowError)."""
    for value in ("+99999999999999999999d", "+5000w", "+1x", "+"):
        with pytest.raises(click.BadParameter) as refused:
            parse_at(value)
        assert "'--at'" in refused.value.format_message()


@pytest.mark.parametrize(
    "body",
    [
        {"audience": {"devices": ["a"], "users": ["b"]}, "title": "t"},
        {"audience": {"all": False}, "title": "t"},
        {"audience": {"tags": []}, "title": "t"},
        {"audience": {"all": True}},
        {"audience": {"all": True}, "title": "t", "data": {"n": 1}},
        {"audience": {"all": True}, "title": "t", "data": {"mpaas_delivery": "x"}},
        {"audience": {"all": True}, "title": "t", "ttl": -1},
        {"audience": {"all": True}, "title": "t", "fallback": "carrier-pigeon"},
        {"audience": {"all": True}, "title": "t", "send_at": "tomorrow"},
    ],
)
def test_invalid_messages_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidPushRequest):
        parse_message_spec(body)


@pytest.mark.parametrize(
    "body",
    [
        {"device_id": "d", "provider": "apns", "token": "not-hex"},
        {"device_id": "d", "provider": "fcm"},
        {"device_id": "d", "provider": "ws", "token": "abc"},
        {"device_id": "../d", "provider": "ws"},
        {"device_id": "d", "provider": "sms"},
        {"device_id": "d", "provider": "ws", "tags": ["ok", "not ok"]},
    ],
)
def test_invalid_devices_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidPushRequest):
        parse_device_spec(body)
