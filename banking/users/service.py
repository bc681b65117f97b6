"""The user system's services: visitor sessions, registration and login, the tier steps.

Handlers of the built-in operations call these with the gateway's :class:`Call`;
operators call the ``*_admin`` ones through the admin API. Every tier change goes
through :meth:`UserService._step`, which writes the audit trail and rotates sessions in
the transaction that changes the tier.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import select as core_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mpaas.banking.errors import (
    CodeRejected,
    IdentityInUse,
    TransitionRefused,
    UserNotFound,
    VerificationFailed,
)
from mpaas.banking.models import BankTierEvent, BankUser
from mpaas.banking.users.codes import OneTimeCodes
from mpaas.banking.users.providers import CardClaim, IdentityClaim, IdentityVerifier
from mpaas.banking.users.sessions import Issued, SessionStore
from mpaas.banking.users.tiers import E_ACCOUNT, REGISTERED, VISITOR, Step, step_to
from mpaas.errors import ValidationError
from mpaas.gateway.codes import GatewayError, ResultCode
from mpaas.gateway.operation import Call
from mpaas.identity.audit import Actor, record
from mpaas.identity.tenancy import get_app
from mpaas.storage.compiled import Compiled
from mpaas.storage.db import Database

PHONE_RE = re.compile(r"\+[1-9][0-9]{6,14}")
USER_ID_RE = re.compile(r"u_[0-9a-f]{16}")


def mask_phone(phone: str) -> str:
    return phone[:-8] + "****" + phone[-4:] if len(phone) > 8 else "****"


def mask_name(name: str) -> str:
    return (name[0] + "*" * (len(name) - 1))[:64] if name else ""


def check_phone(phone: str) -> str:
    if PHONE_RE.fullmatch(phone) is None:
        raise ValidationError("phone must be an E.164 number such as +8613800138000")
    return phone


class UserService:
    def __init__(
        self,
        db: Database,
        sessions: SessionStore,
        codes: OneTimeCodes,
        verifier: IdentityVerifier,
        pepper: bytes,
    ) -> None:
        self.db, self.sessions, self.codes, self.verifier, self.pepper = db, sessions, codes, verifier, pepper
        self._app_ids: dict[str, int] = {}
        # PostgreSQL: every call of a logged-in user reads the user; one compiled statement on
        # asyncpg (ADR 0019) instead of an ORM session. What changes a user locks a fresh row.
        users = BankUser.__table__  # type: ignore[attr-defined]
        self._user_columns = [c.name for c in users.c]
        self._read_user = (
            None
            if db.is_sqlite
            else Compiled(
                core_select(*users.c).where(users.c.public_id == bindparam("public_id")), db.engine.dialect
            )
        )

    async def app_id(self, app: str) -> int:
        found = self._app_ids.get(app)
        if found is None:
            row = await get_app(self.db, app)
            assert row.id is not None
            found = self._app_ids[app] = row.id
        return found

    async def start_visitor(self, call: Call) -> Issued:
        app_id = await self.app_id(call.app)
        async with self.db.write() as s:
            return await self.sessions.issue(s, app_id, call.device, None, call.device_kid)

    async def send_code(self, call: Call, phone: str) -> Any:
        return await self.codes.send(await self.app_id(call.app), call.app, check_phone(phone), call.device)

    async def login(self, call: Call, phone: str, code: str) -> tuple[Issued, BankUser, bool]:
        """Register on the first verified code, else log in; the calling session is replaced."""
        app_id = await self.app_id(call.app)
        if not await self.codes.consume(app_id, call.app, check_phone(phone), call.device, code):
            raise CodeRejected("the code is wrong, expired or used up; ask for a new one")
        created = False
        for _ in range(2):  # a concurrent first login of the same number wins the insert
            try:
                async with self.db.write() as s:
                    user = (
                        await s.exec(
                            select(BankUser).where(BankUser.app_id == app_id, BankUser.phone == phone)
                        )
                    ).first()
                    if user is None:
                        user = BankUser(
                            public_id="u_" + secrets.token_hex(8), app_id=app_id, phone=phone, tier=VISITOR
                        )
                        s.add(user)
                        await s.flush()
                        self._step(s, user, step_to(user, REGISTERED), f"user:{user.public_id}", {})
                        created = True
                    if call.principal is not None:
                        await self.sessions.revoke_current(s, int(call.principal.session_id), "login")
                    issued = await self.sessions.issue(s, app_id, call.device, user, call.device_kid)
                return issued, user, created
            except IntegrityError:
                continue
        raise GatewayError(ResultCode.SERVER_ERROR)

    async def logout(self, call: Call) -> None:
        assert call.principal is not None
        async with self.db.write() as s:
            await self.sessions.revoke_current(s, int(call.principal.session_id), "logout")

    async def user_of(self, call: Call) -> BankUser:
        if call.principal is None or call.principal.user_id is None:
            raise GatewayError(ResultCode.LOGIN_REQUIRED, "log in with a phone number first")
        user: BankUser | None = call.principal.user  # read with the session, on this call
        if user is not None:
            return user
        if self._read_user is not None:
            row = await self.db.fetchrow(self._read_user, {"public_id": call.principal.user_id})
            user = None if row is None else BankUser(**dict(zip(self._user_columns, row, strict=True)))
        else:
            async with self.db.read() as s:
                user = (
                    await s.exec(select(BankUser).where(BankUser.public_id == call.principal.user_id))
                ).first()
        if user is None:
            raise GatewayError(ResultCode.LOGIN_REQUIRED)
        return user

    def identity_hash(self, app: str, id_number: str) -> str:
        return hmac.new(self.pepper, f"{app}|{id_number}".encode(), hashlib.sha256).hexdigest()

    async def open_e_account(self, call: Call, name: str, id_number: str, card: CardClaim) -> Issued:
        """registered → e_account: the verifier checks the identity and the card, then the step."""
        user = await self.user_of(call)
        if user.tier != REGISTERED:
            raise TransitionRefused(f"an e-account is opened from tier {REGISTERED}, not {user.tier}")
        claim = IdentityClaim(name, id_number)
        identity = await self.verifier.verify_identity(claim)
        if not identity.ok:
            raise VerificationFailed(identity.reason or "the identity could not be verified")
        bound = await self.verifier.verify_card(claim, card)
        if not bound.ok:
            raise VerificationFailed(bound.reason or "the card could not be bound")
        try:
            async with self.db.write() as s:
                fresh = await self._lock(s, user.id)
                fresh.name_masked, fresh.identity_ref = mask_name(name), identity.reference
                fresh.identity_hash = self.identity_hash(call.app, id_number)
                fresh.card_last4, fresh.card_bank, fresh.card_ref = (
                    card.number[-4:],
                    card.bank,
                    bound.reference,
                )
                evidence = {"identity_ref": identity.reference, "card_ref": bound.reference}
                self._step(s, fresh, step_to(fresh, E_ACCOUNT), f"user:{fresh.public_id}", evidence)
                return await self._rotate(s, fresh, call)
        except IntegrityError:
            raise IdentityInUse("this identity already holds an e-account in this app") from None

    async def upgrade(self, call: Call, target: str) -> Issued:
        user = await self.user_of(call)
        async with self.db.write() as s:
            fresh = await self._lock(s, user.id)
            step = step_to(fresh, target)
            evidence = {"branch_verified_by": fresh.branch_verified_by} if fresh.branch_verified_by else {}
            self._step(s, fresh, step, f"user:{fresh.public_id}", evidence)
            return await self._rotate(s, fresh, call)

    async def _lock(self, s: AsyncSession, user_pk: int | None) -> BankUser:
        query = select(BankUser).where(BankUser.id == user_pk)
        user = (await s.exec(query if self.db.is_sqlite else query.with_for_update())).first()
        if user is None:
            raise GatewayError(ResultCode.LOGIN_REQUIRED)
        return user

    def _step(
        self, s: AsyncSession, user: BankUser, step: Step, actor: str, evidence: dict[str, Any]
    ) -> None:
        assert user.id is not None
        s.add(
            BankTierEvent(
                user_pk=user.id,
                from_tier=step.source,
                to_tier=step.target,
                actor=actor,
                reason=step.reason,
                evidence=evidence,
                at=self.sessions.now(),
            )
        )
        user.tier, user.updated_at = step.target, self.sessions.now()
        s.add(user)

    async def _rotate(self, s: AsyncSession, user: BankUser, call: Call) -> Issued:
        assert user.id is not None
        await self.sessions.revoke_user(s, user.id, "rotated")
        return await self.sessions.issue(s, user.app_id, call.device, user, call.device_kid)

    # Operators (admin API)

    async def find(self, app: str, user_id: str) -> BankUser:
        if USER_ID_RE.fullmatch(user_id) is None:
            raise UserNotFound(f"user {user_id!r} not found")
        app_id = await self.app_id(app)
        async with self.db.session() as s:
            user = (
                await s.exec(select(BankUser).where(BankUser.app_id == app_id, BankUser.public_id == user_id))
            ).first()
        if user is None:
            raise UserNotFound(f"user {user_id!r} not found")
        return user

    async def history(self, user: BankUser) -> list[BankTierEvent]:
        async with self.db.session() as s:
            rows = await s.exec(
                select(BankTierEvent).where(BankTierEvent.user_pk == user.id).order_by(col(BankTierEvent.id))
            )
            return list(rows.all())

    async def set_branch_verified(
        self, actor: Actor, app: str, user_id: str, verified: bool, note: str
    ) -> BankUser:
        """The operator's in-branch verification flag; the user then upgrades to ``full`` itself."""
        user = await self.find(app, user_id)
        async with self.db.write() as s:
            fresh = await self._lock(s, user.id)
            fresh.branch_verified_at = self.sessions.now() if verified else None
            fresh.branch_verified_by = actor.name if verified else None
            fresh.updated_at = self.sessions.now()
            s.add(fresh)
            action = "banking.branch_verified" if verified else "banking.branch_verification_cleared"
            record(s, actor, action, f"bank-user:{app}/{user_id}", app=app, detail={"note": note[:200]})
        return fresh

    async def revoke_sessions(self, actor: Actor, app: str, user_id: str) -> None:
        user = await self.find(app, user_id)
        assert user.id is not None
        async with self.db.write() as s:
            await self.sessions.revoke_user(s, user.id, "operator")
            record(s, actor, "banking.sessions_revoked", f"bank-user:{app}/{user_id}", app=app)


def user_dict(user: BankUser) -> dict[str, Any]:
    return {
        "user_id": user.public_id,
        "phone": mask_phone(user.phone),
        "tier": user.tier,
        "name": user.name_masked,
        "card": {"last4": user.card_last4, "bank": user.card_bank} if user.card_last4 else None,
        "branch_verified": user.branch_verified_at is not None,
        "created_at": user.created_at,
    }
