"""Fixtures for the push provider tests: stand-ins plus providers pointed at them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mpaas.push.providers.apns import ApnsEndpoint, ApnsProvider
from mpaas.push.providers.base import Notification
from mpaas.push.providers.fcm import FcmProvider
from mpaas.push.standins.apns import ApnsStandin
from mpaas.push.standins.fcm import FcmStandin
from tests_support import LoopClock

TEAM_ID = "TEAM123456"
KEY_ID = "KEY1234567"
TOPIC = "com.example.app"
#: The providers' request timeout where answers are expected: only a hang guard. A loaded
#: machine took over 5 s to put 500 requests through 20 streams; tests of timeouts set
#: their own and end held requests with the ``loop_clock`` fixture.
ANSWERED_TIMEOUT = 60.0


class FakeClock:
    """A settable UNIX clock (seconds)."""

    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class ApnsCredentials:
    key: ec.EllipticCurvePrivateKey
    key_pem: str
    key_id: str = KEY_ID
    team_id: str = TEAM_ID
    topic: str = TOPIC


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def loop_clock() -> AsyncIterator[LoopClock]:
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop)
    loop.time = clock.time  # type: ignore[method-assign]
    try:
        yield clock
    finally:
        del loop.time  # back to the class's method


def apns_token(i: int = 0) -> str:
    """The hex device token of device ``i``."""
    return f"{i:064x}"


MakeNote = Callable[..., Notification]


@pytest.fixture
def make_note() -> MakeNote:
    """``make_note(i, **fields)``: an alert to device ``i`` (:func:`apns_token`) with a fresh UUID id."""

    def make(i: int = 0, **fields: Any) -> Notification:
        defaults: dict[str, Any] = {
            "token": apns_token(i),
            "message_id": str(uuid.uuid4()),
            "title": "Hi",
            "body": "There",
        }
        return Notification(**{**defaults, **fields})

    return make


@pytest.fixture(scope="session")
def apns_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def apns_credentials(apns_key: ec.EllipticCurvePrivateKey) -> ApnsCredentials:
    pem = apns_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return ApnsCredentials(key=apns_key, key_pem=pem)


@pytest.fixture
async def apns_standin(apns_key: ec.EllipticCurvePrivateKey) -> AsyncIterator[ApnsStandin]:
    standin = ApnsStandin(verify_key=apns_key.public_key(), team_id=TEAM_ID)
    await standin.start(tls=False)
    yield standin
    await standin.stop()


@pytest.fixture
async def apns_tls_standin(apns_key: ec.EllipticCurvePrivateKey) -> AsyncIterator[ApnsStandin]:
    standin = ApnsStandin(verify_key=apns_key.public_key(), team_id=TEAM_ID)
    await standin.start(tls=True)
    yield standin
    await standin.stop()


MakeApns = Callable[..., ApnsProvider]


@pytest.fixture
async def make_apns(apns_credentials: ApnsCredentials) -> AsyncIterator[MakeApns]:
    """Build an ApnsProvider aimed at a stand-in (TLS if the stand-in runs TLS)."""
    providers: list[ApnsProvider] = []
    creds = apns_credentials

    def make(standin: ApnsStandin, **kwargs: Any) -> ApnsProvider:
        endpoint = ApnsEndpoint(
            host="127.0.0.1",
            port=standin.port,
            tls=standin.tls,
            ssl_context=standin.client_ssl_context() if standin.tls else None,
        )
        options: dict[str, Any] = {"request_timeout": ANSWERED_TIMEOUT, **kwargs}
        provider = ApnsProvider(
            key=creds.key_pem,
            key_id=creds.key_id,
            team_id=creds.team_id,
            topic=creds.topic,
            endpoint=endpoint,
            **options,
        )
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        await provider.close()


@pytest.fixture
async def fcm_standin(aiohttp_server: Callable[..., Awaitable[Any]]) -> FcmStandin:
    standin = FcmStandin()
    server = await aiohttp_server(standin.app)
    standin.base_url = str(server.make_url("")).rstrip("/")
    return standin


MakeFcm = Callable[..., FcmProvider]


@pytest.fixture
async def make_fcm(fcm_standin: FcmStandin, tmp_path: Path) -> AsyncIterator[MakeFcm]:
    """Build an FcmProvider whose service account and endpoint point at the stand-in."""
    providers: list[FcmProvider] = []
    base_url = fcm_standin.base_url
    assert base_url is not None
    account = fcm_standin.write_service_account(tmp_path / "service-account.json", base_url=base_url)

    def make(**kwargs: Any) -> FcmProvider:
        options: dict[str, Any] = {"request_timeout": ANSWERED_TIMEOUT, **kwargs}
        provider = FcmProvider(
            service_account_file=account, endpoint_base=f"{base_url}/v1/projects", **options
        )
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        await provider.close()
