"""Deterministic rollout buckets, rules and whitelists (no server)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpaas.errors import ValidationError
from mpaas.packages.rollout import Device, Targeting, bucket, parse_rule, parse_rules, percent_to_bp
from mpaas.packages.semver import Version

DEVICES = [f"device-{i:05d}" for i in range(10_000)]


@pytest.mark.parametrize("seed", range(1, 11))
def test_share_is_within_one_point(seed: int) -> None:
    """For the first ten release ids (the seeds), at every step of a rollout.

    Buckets are hash samples: at 50 % the binomial standard deviation over 10,000
    devices is 0.5 point, so ±1 point is about two standard deviations.
    """
    for percent in (1, 5, 10, 20, 25, 50, 75, 90):
        t = Targeting(seed=seed, rollout_bp=percent_to_bp(percent))
        share = 100 * sum(t.admits(Device(d)) for d in DEVICES) / len(DEVICES)
        assert abs(share - percent) <= 1, (seed, percent, share)


def test_raising_the_rollout_keeps_every_device_already_in() -> None:
    previous: set[str] = set()
    for percent in (1, 10, 20, 50, 100):
        t = Targeting(seed=7, rollout_bp=percent_to_bp(percent))
        now_in = {d for d in DEVICES if t.admits(Device(d))}
        assert previous <= now_in
        previous = now_in
    assert len(previous) == len(DEVICES)


def test_seeds_pick_independent_samples() -> None:
    a = {d for d in DEVICES if bucket(d, 1) < 1000}
    b = {d for d in DEVICES if bucket(d, 2) < 1000}
    # Independent 10 % samples overlap by about 1 %, not 10 %.
    assert len(a & b) < 250


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=64), st.integers(min_value=0, max_value=2**31))
def test_bucket_is_stable_and_in_range(device_id: str, seed: int) -> None:
    assert bucket(device_id, seed) == bucket(device_id, seed)
    assert 0 <= bucket(device_id, seed) < 10_000


def _device(**kw: object) -> Device:
    base: dict[str, object] = {
        "device_id": "d1",
        "os": "ios",
        "os_version": Version.parse("17.2"),
        "model": "iPhone15,2",
        "region": "cn",
        "app_version": Version.parse("5.3.0"),
        "tags": frozenset({"beta"}),
        "tier": "gold",
    }
    return Device(**(base | kw))


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("os=ios", True),
        ("os=android", False),
        ("os!=android", True),
        ("os=IOS", True),
        ("os_version>=17", True),
        ("os_version<17", False),
        ("app_version>=5.2 <6", True),
        ("app_version=5.x", True),
        ("app_version!=5.x", False),
        ("app_version>=6", False),
        ("model=iPhone15,2", False),  # a comma separates alternatives
        ("model=Pixel 8", False),
        ("region=CN,HK", True),
        ("tag=beta", True),
        ("tag=internal,beta", True),
        ("tag!=beta", False),
        ("tier=gold,platinum", True),
        ("tier=silver", False),
    ],
)
def test_rules(rule: str, expected: bool) -> None:
    assert parse_rule(rule).test(_device()) is expected


def test_missing_attribute_fails_every_rule_on_it() -> None:
    bare = Device("d1")
    for text in ("os=ios", "os!=ios", "app_version>=1", "app_version!=1.x", "tag!=beta", "tier=gold"):
        assert parse_rule(text).test(bare) is False, text


@pytest.mark.parametrize("bad", ["platform=ios", "os>=ios", "app_version>=five", "os=", "tag"])
def test_bad_rules_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        parse_rule(bad)


def test_whitelist_bypasses_rules_and_percentage() -> None:
    t = Targeting(
        seed=1,
        rollout_bp=0,
        rules=parse_rules(["os=android"]),
        device_ids=frozenset({"vip-device"}),
        user_ids=frozenset({"u-7"}),
    )
    assert t.admits(_device(device_id="vip-device"))
    assert t.admits(_device(user_id="u-7"))
    assert not t.admits(_device(device_id="someone"))


def test_rules_combine_with_and() -> None:
    t = Targeting(seed=1, rollout_bp=10_000, rules=parse_rules(["os=ios", "region=us"]))
    assert not t.admits(_device())
    assert t.admits(_device(region="us"))
