"""Helpers of the gateway and banking tests: a running app with app ``bank``, an app key,
the reference client, and an operation that counts its executions."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient
from pydantic import BaseModel, ConfigDict, Field
from release_fixtures import make_zip

from mpaas.app import create_app
from mpaas.appkeys import DB
from mpaas.banking.client import GatewayClient
from mpaas.banking.service import BANKING, Banking
from mpaas.banking.users.providers import MemorySms
from mpaas.gateway.operation import Call, OperationSpec
from mpaas.gateway.pipeline import Gateway
from mpaas.gateway.wiring import GATEWAY
from mpaas.identity.audit import Actor
from mpaas.identity.tenancy import create_app as create_tenant
from mpaas.identity.tokens import create_token
from mpaas.settings import Settings

ACTOR = Actor("test")


@dataclass
class Env:
    http: TestClient  # type: ignore[type-arg]
    settings: Settings
    kid: str
    secret: bytes

    @property
    def gateway(self) -> Gateway:
        return self.http.app[GATEWAY]

    @property
    def banking(self) -> Banking:
        return self.http.app[BANKING]

    def client(self, **kw: Any) -> GatewayClient:
        return GatewayClient(self.http, "bank", app_kid=self.kid, app_secret=self.secret, **kw)


def env_settings(make_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    return make_settings(
        banking_sms_provider="memory", push_worker=False, release_background=False, **overrides
    )


async def start(aiohttp_client: Any, settings: Settings) -> Env:
    http = await aiohttp_client(create_app(settings))
    await create_tenant(http.app[DB], ACTOR, "bank", ["ios", "android"])
    row, secret = await http.app[GATEWAY].keys.create_app_key(ACTOR, "bank")
    return Env(http, settings, row.kid, base64.b64decode(secret))


class Counted(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=32)


def add_counter(env: Env, name: str = "com.test.count", **kw: Any) -> list[Call]:
    """Register an in-process operation that records each execution; returns the record."""
    calls: list[Call] = []

    async def handler(call: Call, params: Counted) -> dict[str, Any]:
        calls.append(call)
        return {"n": len(calls), "note": params.note}

    spec = OperationSpec(name=name, version=1, input=Counted, handler=handler, session_required=False)
    env.banking.registry.add(dataclasses.replace(spec, **kw), "tests")
    return calls


async def admin_headers_of(env: Env) -> dict[str, str]:
    """An admin token on the env's own app (no second app instance)."""
    _row, secret = await create_token(env.http.app[DB], ACTOR, name="t-admin", role="admin")
    return {"Authorization": f"Bearer {secret}"}


async def publish_package(
    env: Env, headers: dict[str, str], kind: str, package_id: str, version: str
) -> None:
    """Publish a tiny package through the admin API (upload, then publish)."""
    data = make_zip({"index.html": f"<h1>{package_id} {version}</h1>".encode()})
    resp = await env.http.post(
        "/api/v1/apps/bank/uploads",
        json={"size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        headers=headers,
    )
    upload = (await resp.json())["upload_id"]
    resp = await env.http.put(
        f"/api/v1/apps/bank/uploads/{upload}/chunks?offset=0", data=data, headers=headers
    )
    assert resp.status == 200, await resp.text()
    body = {"upload_id": upload, "kind": kind, "id": package_id, "version": version}
    resp = await env.http.post("/api/v1/apps/bank/packages", json=body, headers=headers)
    assert resp.status in (200, 201), await resp.text()


PHONE = "+8613800138000"
ID_NUMBER, OTHER_ID = "11010519491231002X", "440101199003070413"
CARD = "6222020200112230"


def last_code(env: Env) -> str:
    sms = env.banking.sms
    assert isinstance(sms, MemorySms)
    return sms.outbox[-1].text.split("code is ")[1][:6]


async def register(env: Env, client: GatewayClient, phone: str = PHONE) -> dict[str, Any]:
    assert (await client.call("mpaas.session.start")).ok
    assert (await client.call("mpaas.otp.send", {"phone": phone})).ok
    login = await client.call("mpaas.user.login", {"phone": phone, "code": last_code(env)})
    assert login.ok, login.error
    return login.result


async def open_account(client: GatewayClient, id_number: str = ID_NUMBER, card: str = CARD) -> Any:
    params = {"name": "张三", "id_number": id_number, "card_number": card, "card_bank": "Other Bank"}
    return await client.call("mpaas.account.open", params)
