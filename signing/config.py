"""The signing domain's settings: key directory, key type, root threshold, expiries, freshness."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from mpaas.settings import Settings
from mpaas.signing.keys import KeyType
from mpaas.signing.tuf_root import DEFAULT_EXPIRIES, Expiries


@dataclass(frozen=True)
class SigningConfig:
    """What the signing services take from :class:`~mpaas.settings.Settings`."""

    keys_dir: Path
    key_type: KeyType = "ecdsa"
    root_threshold: int = 1
    expiries: Expiries = DEFAULT_EXPIRIES
    refresh_interval: float = 600.0
    refresh_within: timedelta = timedelta(hours=12)

    @classmethod
    def from_settings(cls, s: Settings) -> SigningConfig:
        key_type: KeyType = "ed25519" if s.tuf_key_type == "ed25519" else "ecdsa"
        return cls(
            keys_dir=s.keys_dir,
            key_type=key_type,
            root_threshold=s.tuf_root_threshold,
            expiries=Expiries(
                root=timedelta(days=s.tuf_root_expiry_days),
                targets=timedelta(days=s.tuf_targets_expiry_days),
                snapshot=timedelta(days=s.tuf_snapshot_expiry_days),
                timestamp=timedelta(hours=s.tuf_timestamp_expiry_hours),
            ),
            refresh_interval=float(s.tuf_refresh_interval),
            refresh_within=timedelta(hours=s.tuf_refresh_within_hours),
        )
