"""The scenes a bank asks the risk engine about, their fail modes, and their shipped rules.

A scene has one rule set at a time. Its fail mode says what happens when a feature source
(the velocity counters) or the scoring model times out or fails: ``closed`` raises the
action to at least ``challenge``; ``open`` decides on what is known (the rules that read the
missing values are "not evaluated"). A rule set may override it with ``fail_mode``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

from mpaas.banking.risk.errors import InvalidRuleSet
from mpaas.banking.risk.rules import RuleSetDoc, parse_document

#: scene → default fail mode. Money and credentials fail closed; logins and rewards open.
SCENES: dict[str, str] = {
    "transfer": "closed",
    "login": "open",
    "device_binding": "closed",
    "card_binding": "closed",
    "phone_change": "closed",
    "reward_claim": "open",
}


def fail_mode(scene: str) -> str:
    return SCENES.get(scene, "closed")


def check_known(scene: str) -> str:
    if scene not in SCENES:
        raise InvalidRuleSet(f"unknown scene {scene!r}; scenes are {', '.join(SCENES)}")
    return scene


@cache
def _shipped() -> dict[str, Any]:
    raw = resources.files("mpaas.banking.risk").joinpath("default_scenes.yaml").read_text()
    data = yaml.safe_load(raw)
    return data if isinstance(data, dict) else {}


def shipped_document(scene: str) -> RuleSetDoc | None:
    """The shipped rules of a non-transfer scene (``default_scenes.yaml``), else None."""
    data = _shipped().get(scene)
    return parse_document(data) if isinstance(data, dict) else None
