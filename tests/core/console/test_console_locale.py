"""The console's locale from Accept-Language: any header gives en or zh-CN, never an error."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mpaas.console.sessions import preferred_locale


@given(st.text(max_size=600))
def test_any_header_gives_a_supported_locale(header: str) -> None:
    assert preferred_locale(header) in ("en", "zh-CN")


def test_the_preferred_language_wins() -> None:
    assert preferred_locale("zh-CN,zh;q=0.9,en;q=0.8") == "zh-CN"
    assert preferred_locale("en-US,en;q=0.9,zh-CN;q=0.8") == "en"
    assert preferred_locale("fr;q=1, zh-TW;q=0.7, en;q=0.5") == "zh-CN"
    assert preferred_locale("de, fr") == "en"
    assert preferred_locale("") == "en"
