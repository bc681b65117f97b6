"""Masking: every planted card, PRC ID and mainland mobile number is caught; allowed properties are kept."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mpaas.analytics.masking import classify, luhn_valid, mask_text, mask_tree, prc_id_valid

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def luhn_complete(body: str) -> str:
    """``body`` plus the Luhn check digit, computed independently of the module under test."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return body + str((10 - total % 10) % 10)


def prc_complete(body: str) -> str:
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, ID_WEIGHTS, strict=True)) % 11]


digits = st.text(alphabet="0123456789", min_size=1, max_size=1)
cards = st.integers(min_value=12, max_value=18).flatmap(
    lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n).map(luhn_complete)
)
ids = st.text(alphabet="0123456789", min_size=17, max_size=17).map(prc_complete)
mobiles = st.tuples(st.sampled_from("3456789"), st.text(alphabet="0123456789", min_size=9, max_size=9)).map(
    lambda t: "1" + t[0] + t[1]
)
#: Text around a number: anything but digits touching it (a digit would make it another number).
filler = st.text(alphabet=st.characters(blacklist_categories=["Nd"]), max_size=12)


def grouped(number: str, rng: random.Random) -> str:
    """The number as people write it: plain, or in groups of 4 joined by spaces or dashes."""
    style = rng.choice(["plain", " ", "-"])
    if style == "plain":
        return number
    return style.join(number[i : i + 4] for i in range(0, len(number), 4))


@settings(deadline=None)  # no wall-clock limit: the machine is shared
@given(cards, filler, filler, st.randoms())
def test_every_luhn_valid_card_number_is_masked(
    card: str, before: str, after: str, rng: random.Random
) -> None:
    text = before + " " + grouped(card, rng) + " " + after
    masked, kinds = mask_text(text)
    assert not any(ch in "0123456789" for ch in masked), masked  # the filler has no digits of its own
    assert kinds


@settings(deadline=None)  # no wall-clock limit: the machine is shared
@given(ids, filler, filler)
def test_every_prc_id_with_its_check_digit_is_masked(number: str, before: str, after: str) -> None:
    masked, kinds = mask_text(f"{before} {number} {after}")
    assert not any(ch in "0123456789" for ch in masked), masked
    assert kinds


@settings(deadline=None)  # no wall-clock limit: the machine is shared
@given(mobiles, filler, filler, st.sampled_from(["", "+86 ", "86", "0086 "]), st.booleans())
def test_every_mainland_mobile_number_is_masked(
    number: str, before: str, after: str, prefix: str, spaced: bool
) -> None:
    shown = f"{number[:3]} {number[3:7]} {number[7:]}" if spaced else number
    masked, kinds = mask_text(f"{before} {prefix}{shown} {after}")
    assert "mobile" in kinds or "card" in kinds
    assert number not in masked.replace(" ", "")


@settings(deadline=None)  # no wall-clock limit: the machine is shared
@given(st.text(alphabet="0123456789", min_size=13, max_size=19))
def test_a_card_candidate_is_masked_exactly_when_its_check_digit_holds(number: str) -> None:
    _masked, kinds = mask_text(number)
    expected = luhn_valid(number) or prc_id_valid(number) or classify(number) == "mobile"
    assert bool(kinds) == expected


def test_a_seeded_set_is_caught_completely_and_allowed_properties_are_kept() -> None:
    rng = random.Random(20261203)
    planted: list[tuple[str, str]] = []
    for _ in range(300):
        kind = rng.choice(["card", "id", "mobile"])
        if kind == "card":
            number = luhn_complete("".join(rng.choice("0123456789") for _ in range(rng.randint(12, 18))))
            planted.append((kind, grouped(number, rng)))
        elif kind == "id":
            body = "".join(rng.choice("0123456789") for _ in range(17))
            number = prc_complete(body)
            planted.append((kind, number if rng.random() < 0.5 else number.lower()))
        else:
            planted.append(
                (kind, "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9)))
            )
    props: dict[str, Any] = {"note": "", "nested": {"list": []}, "contact_phone": "13812345678"}
    for i, (_kind, shown) in enumerate(planted):
        where = i % 3
        if where == 0:
            props["note"] += f" item {shown};"
        elif where == 1:
            props["nested"]["list"].append({"value": shown})
        else:
            props[f"field{i}"] = int(shown) if shown.isdigit() and shown[0] != "0" else shown
    masked, kinds = mask_tree(props, allowed={"contact_phone"})
    text = repr(masked)
    for _kind, shown in planted:
        assert shown not in text, shown
    assert kinds == {"card", "id", "mobile"}
    assert masked["contact_phone"] == "13812345678"  # the catalogue allows it


def test_ordinary_numbers_are_left_alone() -> None:
    text = "order 2026-12-03 12:30, amount 1500.25, ref 4111111111111112, 10 items, v5.3.0"
    assert mask_text(text) == (text, set())


def test_full_width_digits_count_as_digits() -> None:
    """Chinese input methods type full-width digits; they are masked like ASCII ones."""
    masked, kinds = mask_text("手机 １３８１２３４５６７８，卡 ４１１１ １１１１ １１１１ １１１１")
    assert masked == "手机 [masked:mobile]，卡 [masked:card]" and kinds == {"mobile", "card"}
