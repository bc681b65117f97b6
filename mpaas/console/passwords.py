"""argon2id password hashing (argon2-cffi), run off the event loop.

A hash costs tens of milliseconds of CPU and ``MPAAS_CONSOLE_ARGON2_MEMORY_KIB`` of
memory, so it runs in a worker thread. A sign-in for an unknown user still verifies
against a dummy hash, so the answer's timing does not tell which names exist.
"""

from __future__ import annotations

import asyncio
import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mpaas.errors import ValidationError

MIN_PASSWORD = 12
MAX_PASSWORD = 256


class Passwords:
    """Hash and verify console passwords with one set of argon2id parameters."""

    def __init__(self, memory_kib: int) -> None:
        self.hasher = PasswordHasher(time_cost=3, memory_cost=memory_kib, parallelism=4)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        check_password(password)
        return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored``; with no stored hash, spend the same time and say no."""
        if stored is None:
            if self._dummy is None:
                self._dummy = await asyncio.to_thread(self.hasher.hash, "not a password of anyone")
            await asyncio.to_thread(functools.partial(_verify, self.hasher, self._dummy, password))
            return False
        return await asyncio.to_thread(functools.partial(_verify, self.hasher, stored, password))

    def needs_rehash(self, stored: str) -> bool:
        return self.hasher.check_needs_rehash(stored)


def _verify(hasher: PasswordHasher, stored: str, password: str) -> bool:
    try:
        return hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValidationError(f"a password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")
    if "\x00" in password:
        raise ValidationError("a password must not hold a NUL character")
    return password
