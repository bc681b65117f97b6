"""The catalogue document an operator edits (JSON or YAML) and the view a client gets.

.. code-block:: yaml

    mini_programs:
      - id: wealth-center          # a package lineage of this app (kind offline or bundle)
        kind: offline
        title: Wealth
        min_tier: full             # or tiers: [registered, e_account]
        platforms: [ios, android]
        app_versions: ">=2.3"
    products:
      - id: fixed-deposit-3m
        title: 3-month fixed deposit
        min_tier: e_account

An entry reaches a user when the user's tier is in ``tiers`` (when given) or at least
``min_tier``, the platform is listed, and the app version is in ``app_versions``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mpaas.banking.users.tiers import LEVELS, TIERS, check_tier
from mpaas.errors import MpaasError
from mpaas.packages.semver import Range, Version, check_range

ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
Platform = Literal["ios", "android"]
PLATFORMS: tuple[Platform, ...] = ("ios", "android")


def _checked(check: Callable[[str], str], value: str) -> str:
    """Run one of the domain's checks inside a validator (pydantic reports ValueErrors)."""
    try:
        return check(value)
    except MpaasError as exc:
        raise ValueError(exc.message) from None


class Audience(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_tier: str = "visitor"
    tiers: list[str] | None = Field(default=None, max_length=4)
    platforms: list[Platform] = Field(default_factory=lambda: list(PLATFORMS), max_length=2)
    app_versions: str | None = Field(default=None, max_length=256)

    @field_validator("min_tier")
    @classmethod
    def _tier(cls, value: str) -> str:
        return _checked(check_tier, value)

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, value: list[str] | None) -> list[str] | None:
        return [_checked(check_tier, t) for t in value] if value is not None else None

    @field_validator("app_versions")
    @classmethod
    def _range(cls, value: str | None) -> str | None:
        return _checked(check_range, value) if value is not None else None

    def reaches(self, tier: str, platform: str | None, app_version: Version | None) -> bool:
        if self.tiers is not None:
            if tier not in self.tiers:
                return False
        elif LEVELS[tier] < LEVELS[self.min_tier]:
            return False
        if platform is not None and platform not in self.platforms:
            return False
        if self.app_versions is not None:
            return app_version is not None and Range.parse(self.app_versions).contains(app_version)
        return True


class MiniProgram(Audience):
    id: str = Field(pattern=ID_PATTERN)
    kind: Literal["offline", "bundle"] = "offline"
    title: str = Field(min_length=1, max_length=64)
    entry: str | None = Field(default=None, max_length=256)


class Product(Audience):
    id: str = Field(pattern=ID_PATTERN)
    title: str = Field(min_length=1, max_length=128)
    description: str = Field(default="", max_length=1000)


class CatalogDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mini_programs: list[MiniProgram] = Field(default_factory=list, max_length=200)
    products: list[Product] = Field(default_factory=list, max_length=500)

    @field_validator("mini_programs", "products")
    @classmethod
    def _unique(cls, value: list[MiniProgram] | list[Product]) -> list[MiniProgram] | list[Product]:
        ids = [item.id for item in value]
        if len(ids) != len(set(ids)):
            raise ValueError("ids must be unique")
        return value


__all__ = ["TIERS", "Audience", "CatalogDocument", "MiniProgram", "Product"]
