"""One-time codes for phone verification: sent by the SMS provider, stored as a keyed hash.

A code is 6 random digits, valid for 5 minutes, for the device that asked for it, and
for at most 5 tries; asking again replaces the previous code. Sending is limited per
phone number (3 per 10 minutes) and per device (10 per hour) with the gateway's shared
token buckets, so the limits hold across processes. The stored hash is an HMAC with a
key derived from the gateway master key: a database dump alone cannot be brute-forced
back to the million possible codes. Every refusal says the same thing, so a caller
cannot tell a wrong code from an expired or exhausted one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlmodel import col, select, update

from mpaas.banking.errors import TooManyCodes
from mpaas.banking.models import BankOneTimeCode
from mpaas.banking.users.providers import SmsProvider
from mpaas.banking.users.sessions import at
from mpaas.errors import Unavailable
from mpaas.gateway.admission import Bucket, Rate, RateLimiter
from mpaas.storage.db import Database

DIGITS = 6
LIFETIME = timedelta(minutes=5)
MAX_ATTEMPTS = 5
PER_PHONE = Rate(3, 600.0)
PER_DEVICE = Rate(10, 3600.0)


class OneTimeCodes:
    def __init__(
        self, db: Database, limiter: RateLimiter, sms: SmsProvider, pepper: bytes, clock: Callable[[], float]
    ) -> None:
        self.db, self.limiter, self.sms, self.pepper, self.clock = db, limiter, sms, pepper, clock

    def _hash(self, app: str, phone: str, device: str, code: str) -> str:
        message = f"{app}|{phone}|{device}|{code}".encode()
        return hmac.new(self.pepper, message, hashlib.sha256).hexdigest()

    async def send(self, app_id: int, app: str, phone: str, device: str) -> datetime:
        """Send a new code; returns when it expires."""
        now = self.clock()
        verdict = await self.limiter.take(
            [
                Bucket(f"otp:{{{app}}}:phone:{phone}", "phone number", PER_PHONE),
                Bucket(f"otp:{{{app}}}:dev:{device}", "device", PER_DEVICE),
            ],
            now,
        )
        if verdict.limited is not None:
            raise TooManyCodes(
                f"too many codes for this {verdict.limited}; retry later", retry_after=verdict.retry_after
            )
        code = f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}"
        expires = at(now) + LIFETIME
        async with self.db.write() as s:
            await s.exec(
                update(BankOneTimeCode)
                .where(
                    col(BankOneTimeCode.app_id) == app_id,
                    col(BankOneTimeCode.phone) == phone,
                    col(BankOneTimeCode.consumed_at).is_(None),
                )
                .values(attempts=MAX_ATTEMPTS)
            )
            row = BankOneTimeCode(
                app_id=app_id,
                phone=phone,
                device_id=device,
                code_hash=self._hash(app, phone, device, code),
                created_at=at(now),
                expires_at=expires,
            )
            s.add(row)
        try:
            await self.sms.send(phone, f"Your verification code is {code}. It expires in 5 minutes.")
        except Exception:
            async with self.db.write() as s:
                await s.exec(
                    update(BankOneTimeCode)
                    .where(col(BankOneTimeCode.id) == row.id)
                    .values(attempts=MAX_ATTEMPTS)
                )
            raise Unavailable("the text message could not be sent; retry later") from None
        return expires

    async def consume(self, app_id: int, app: str, phone: str, device: str, code: str) -> bool:
        """True once for the right code from the right device; every try counts."""
        now = at(self.clock())
        async with self.db.write() as s:
            query = (
                select(BankOneTimeCode)
                .where(
                    BankOneTimeCode.app_id == app_id,
                    BankOneTimeCode.phone == phone,
                    col(BankOneTimeCode.consumed_at).is_(None),
                )
                .order_by(col(BankOneTimeCode.id).desc())
                .limit(1)
            )
            row = (await s.exec(query if self.db.is_sqlite else query.with_for_update())).first()
            if row is None or row.attempts >= MAX_ATTEMPTS or row.expires_at <= now:
                return False
            row.attempts += 1
            ok = hmac.compare_digest(row.code_hash, self._hash(app, phone, device, code))
            if ok:
                row.consumed_at = now
            s.add(row)
            return ok
