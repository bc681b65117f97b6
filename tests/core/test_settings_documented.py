"""Every setting is documented for operators: a field of Settings that docs/configuration.md
does not name as ``MPAAS_<FIELD>`` fails here (issue 13)."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from mpaas.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def documented_names() -> set[str]:
    return set(re.findall(r"MPAAS_[A-Z0-9_]+", DOC.read_text()))


def test_every_setting_is_in_the_configuration_doc() -> None:
    missing = sorted(
        f"MPAAS_{f.name.upper()}"
        for f in fields(Settings)
        if f"MPAAS_{f.name.upper()}" not in documented_names()
    )
    assert missing == []


def test_the_check_sees_a_missing_name() -> None:
    assert "MPAAS_NO_SUCH_SETTING" not in documented_names()
    assert "MPAAS_DATA_DIR" in documented_names()
