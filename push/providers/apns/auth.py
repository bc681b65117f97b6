"""APNs provider authentication: the ES256 provider token (JWT) of a .p8 key."""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from mpaas.errors import ConfigError

#: Apple rejects provider tokens older than 60 minutes and refreshes more often than
#: every 20 minutes (TooManyProviderTokenUpdates).
MAX_JWT_REFRESH_SECONDS = 50 * 60
DEFAULT_JWT_REFRESH_SECONDS = 30 * 60

#: 403 reasons after which a fresh provider token may succeed.
REFRESH_REASONS = frozenset({"ExpiredProviderToken", "InvalidProviderToken"})


def load_p8_key(pem: str) -> ec.EllipticCurvePrivateKey:
    """The EC P-256 private key of a .p8 file's PEM text; :class:`ConfigError` otherwise."""
    try:
        private_key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"APNs key is not a PEM private key: {exc}") from exc
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or private_key.curve.name != "secp256r1":
        raise ConfigError("APNs key must be an EC P-256 (.p8) key")
    return private_key


class ProviderTokenSigner:
    """The ES256 provider JWT, shared by every connection of one provider.

    aioapns mints one per connection and refreshes after 30 minutes of ``time.time()``;
    ours takes an injectable clock, refuses intervals Apple would reject, re-mints when
    the clock goes backwards, and can be invalidated after a 403 ExpiredProviderToken.
    It is the :class:`~mpaas.push.providers.http2.Credential` of the provider's connections.
    """

    def __init__(
        self,
        *,
        key: ec.EllipticCurvePrivateKey,
        key_id: str,
        team_id: str,
        refresh_seconds: float = DEFAULT_JWT_REFRESH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < refresh_seconds <= MAX_JWT_REFRESH_SECONDS:
            raise ConfigError(f"APNs JWT refresh must be in (0, {MAX_JWT_REFRESH_SECONDS}] seconds")
        self._key = key
        self._key_id = key_id
        self._team_id = team_id
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._header: str | None = None
        self._issued_at = 0.0
        #: Bumped on every mint; lets a 403 invalidate only the token it was answered for.
        self.generation = 0

    def get_header(self) -> str:
        now = self._clock()
        age = now - self._issued_at
        if self._header is None or age >= self._refresh_seconds or age < 0:
            self._issued_at = now
            token = jwt.encode(
                {"iss": self._team_id, "iat": int(now)},
                self._key,
                algorithm="ES256",
                headers={"kid": self._key_id},
            )
            self._header = f"bearer {token}"
            self.generation += 1
        return self._header

    def invalidate(self, generation: int) -> None:
        """Forget the token of ``generation`` (no-op if a newer one was minted meanwhile)."""
        if generation == self.generation:
            self._header = None
