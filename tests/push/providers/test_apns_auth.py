"""APNs provider authentication: the .p8 key, the provider JWT, its refresh and invalidation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mpaas.errors import ConfigError
from mpaas.push.providers.apns import ApnsProvider
from mpaas.push.providers.apns.auth import ProviderTokenSigner
from mpaas.push.providers.base import Notification, Outcome
from mpaas.push.standins.apns import ApnsStandin

MakeApns = Callable[..., ApnsProvider]
MakeNote = Callable[..., Notification]


async def test_expired_provider_token_refreshes_jwt(
    apns_standin: ApnsStandin, make_apns: MakeApns, make_note: MakeNote
) -> None:
    apns_standin.inject(403, "ExpiredProviderToken", count=1)
    provider = make_apns(apns_standin)

    first = await provider.send(make_note(1))
    second = await provider.send(make_note(2))

    assert (first.outcome, first.status, first.reason) == (Outcome.RETRY, 403, "ExpiredProviderToken")
    assert second.outcome is Outcome.SENT
    bearers = [r.headers["authorization"] for r in apns_standin.requests]
    assert len(bearers) == 2
    assert bearers[0] != bearers[1]


async def test_jwt_is_reminted_after_refresh_interval(
    apns_standin: ApnsStandin, make_apns: MakeApns, make_note: MakeNote, clock: Any
) -> None:
    provider = make_apns(apns_standin, clock=clock)

    await provider.send(make_note(1))
    clock.advance(29 * 60)
    await provider.send(make_note(2))
    clock.advance(61)
    await provider.send(make_note(3))

    bearers = [r.headers["authorization"] for r in apns_standin.requests]
    assert bearers[0] == bearers[1]
    assert bearers[2] != bearers[1]
    assert len(apns_standin.bearer_tokens) == 2  # both verified by the stand-in (ES256, team id)


def test_signer_refuses_refresh_intervals_apple_would_reject(apns_credentials: Any) -> None:
    c = apns_credentials
    with pytest.raises(ConfigError):
        ProviderTokenSigner(key=c.key, key_id=c.key_id, team_id=c.team_id, refresh_seconds=61 * 60)


def test_signer_invalidate_ignores_stale_generation(apns_credentials: Any, clock: Any) -> None:
    c = apns_credentials
    signer = ProviderTokenSigner(key=c.key, key_id=c.key_id, team_id=c.team_id, clock=clock)
    first = signer.get_header()
    signer.invalidate(signer.generation - 1)
    assert signer.get_header() == first
    signer.invalidate(signer.generation)
    assert signer.get_header() != first


def test_provider_refuses_non_p256_key(apns_credentials: Any) -> None:
    c = apns_credentials
    pem = (
        ec.generate_private_key(ec.SECP384R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    with pytest.raises(ConfigError):
        ApnsProvider(key=pem, key_id=c.key_id, team_id=c.team_id, topic=c.topic)
    with pytest.raises(ConfigError):
        ApnsProvider(key="not a key", key_id=c.key_id, team_id=c.team_id, topic=c.topic)


@pytest.mark.parametrize("empty", ["key_id", "team_id", "topic"])
def test_provider_refuses_empty_credentials(apns_credentials: Any, empty: str) -> None:
    c = apns_credentials
    fields = {"key_id": c.key_id, "team_id": c.team_id, "topic": c.topic, empty: ""}
    with pytest.raises(ConfigError):
        ApnsProvider(key=c.key_pem, **fields)
