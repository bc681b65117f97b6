"""The roles an admin token or console account can hold; ``admin`` may do everything."""

from __future__ import annotations

ROLES: tuple[str, ...] = ("admin", "release-manager", "analyst", "push-operator", "risk-officer")


def check_roles(roles: tuple[str, ...], where: str) -> None:
    """Refuse, at start-up, an endpoint declared with a role that does not exist."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)} on {where}")
