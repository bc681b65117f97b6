"""Built-in operations: the user journey end to end, and the pattern for a bank's own.

=========================  ==========  =======  ================================================
operation (version 1)      min tier    session  does
=========================  ==========  =======  ================================================
``mpaas.session.start``    visitor     no       a visitor session for this device
``mpaas.otp.send``         visitor     yes      text a one-time code to a phone number
``mpaas.user.login``       visitor     yes      verify the code; register on first use; new session
``mpaas.user.logout``      visitor     yes      revoke this session
``mpaas.user.profile``     registered  yes      the user's profile and tier
``mpaas.catalog.get``      visitor     no       the catalogue for the caller's tier
``mpaas.products.list``    visitor     no       the products offered to the caller's tier
``mpaas.account.open``     registered  yes      open an e-account: identity check + card at another bank
``mpaas.tier.upgrade``     e_account   yes      move up a tier once its precondition holds
=========================  ==========  =======  ================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mpaas.banking.operations.declare import Declared, operation
from mpaas.banking.users.providers import CardClaim
from mpaas.banking.users.service import user_dict
from mpaas.banking.users.tiers import VISITOR
from mpaas.gateway.operation import Call

if TYPE_CHECKING:
    from mpaas.banking.service import Banking


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Empty(Strict):
    pass


class SessionOut(BaseModel):
    session: str
    tier: str
    expires_at: str
    bound_to_device_key: bool


class SendCodeIn(Strict):
    phone: str = Field(pattern=r"\+[1-9][0-9]{6,14}", description="E.164")


class SendCodeOut(BaseModel):
    sent: bool
    expires_at: str


class LoginIn(Strict):
    phone: str = Field(pattern=r"\+[1-9][0-9]{6,14}")
    code: str = Field(pattern=r"[0-9]{6}")


class LoginOut(SessionOut):
    user_id: str
    registered: bool


class ClientIn(Strict):
    platform: Literal["ios", "android"] | None = None
    app_version: str | None = Field(default=None, pattern=r"[0-9]{1,9}(\.[0-9]{1,9}){0,2}")


class OpenAccountIn(Strict):
    name: str = Field(min_length=1, max_length=64)
    id_number: str = Field(pattern=r"[1-9][0-9]{16}[0-9X]")
    card_number: str = Field(pattern=r"[0-9]{16,19}")
    card_bank: str = Field(min_length=1, max_length=64)


class UpgradeIn(Strict):
    target: Literal["full"] = "full"


def tier_of(call: Call) -> str:
    return call.principal.tier if call.principal is not None else VISITOR


def builtin_operations(b: Banking) -> list[Declared]:
    @operation(
        "mpaas.session.start", input=Empty, output=SessionOut, min_tier=VISITOR, session=False, rate="30/h"
    )
    async def start(call: Call, params: Empty) -> dict[str, Any]:
        """A visitor session for this device."""
        return (await b.users.start_visitor(call)).to_dict()

    @operation("mpaas.otp.send", input=SendCodeIn, output=SendCodeOut, min_tier=VISITOR)
    async def send_code(call: Call, params: SendCodeIn) -> dict[str, Any]:
        """Text a one-time code to a phone number."""
        expires = await b.users.send_code(call, params.phone)
        return {"sent": True, "expires_at": expires.isoformat()}

    @operation("mpaas.user.login", input=LoginIn, output=LoginOut, min_tier=VISITOR)
    async def login(call: Call, params: LoginIn) -> dict[str, Any]:
        """Verify the code; register the number on first use; replace the session."""
        issued, user, created = await b.users.login(call, params.phone, params.code)
        return issued.to_dict() | {"user_id": user.public_id, "registered": created}

    @operation("mpaas.user.logout", input=Empty, min_tier=VISITOR)
    async def logout(call: Call, params: Empty) -> dict[str, Any]:
        """Revoke this session."""
        await b.users.logout(call)
        return {"logged_out": True}

    @operation("mpaas.user.profile", input=Empty, min_tier="registered", idempotent=True)
    async def profile(call: Call, params: Empty) -> dict[str, Any]:
        """The user's profile and tier."""
        user = await b.users.user_of(call)
        return user_dict(user) | {"created_at": user.created_at.isoformat()}

    @operation("mpaas.catalog.get", input=ClientIn, min_tier=VISITOR, session=False, idempotent=True)
    async def catalog(call: Call, params: ClientIn) -> dict[str, Any]:
        """The catalogue for the caller's tier, platform and app version."""
        app_id = await b.users.app_id(call.app)
        body, etag = await b.catalog.view(
            app_id, call.app, tier_of(call), params.platform, params.app_version
        )
        return body | {"etag": etag}

    @operation("mpaas.products.list", input=ClientIn, min_tier=VISITOR, session=False, idempotent=True)
    async def products(call: Call, params: ClientIn) -> dict[str, Any]:
        """The products offered to the caller's tier."""
        app_id = await b.users.app_id(call.app)
        body, _ = await b.catalog.view(app_id, call.app, tier_of(call), params.platform, params.app_version)
        return {"tier": body["tier"], "products": body["products"]}

    @operation(
        "mpaas.account.open", input=OpenAccountIn, output=SessionOut, min_tier="registered", rate="5/d"
    )
    async def open_account(call: Call, params: OpenAccountIn) -> dict[str, Any]:
        """Open an e-account: identity check and a card at another bank; the session rotates."""
        card = CardClaim(params.card_number, params.card_bank)
        return (await b.users.open_e_account(call, params.name, params.id_number, card)).to_dict()

    @operation("mpaas.tier.upgrade", input=UpgradeIn, output=SessionOut, min_tier="e_account")
    async def upgrade(call: Call, params: UpgradeIn) -> dict[str, Any]:
        """Move up a tier once its precondition holds; the session rotates."""
        return (await b.users.upgrade(call, params.target)).to_dict()

    return [start, send_code, login, logout, profile, catalog, products, open_account, upgrade]
