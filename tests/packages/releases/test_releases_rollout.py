"""Deterministic rollout buckets, rules and whitelists (no server)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpaas.errors import ValidationError
from mpaas.packages.releases.rollout import Device, Targeting, bucket, parse_rule, parse_rules, percent_to_bp
from mpaas.packages.semver import Version

DEVICES = [f"device-{i:05d}" for i in range(10_000)]


PERCENTS = (1, 5, 10, 20, 25, 50, 75, 90)


def test_share_is_within_one_point() -> None:
    """For 100 releases (seeds 1-100) at every step of a rollout, over 10,000 devices.

    Buckets are hash samples: at 25 % the binomial standard deviation over 10,000
    devices is 0.43 point, so ±1 point is 2.3 standard deviations and a fair hash
    misses it about 1 % of the time. The test asks for at least 97 % of the 800
    (release, percentage) pairs within ±1 point, and for the squared deviations, in
    units of the binomial variance, to average about 1: a biased or clumpy hash
    (sequential ids landing together) fails either.
    """
    within, z2 = 0, 0.0
    for seed in range(1, 101):
        for percent in PERCENTS:
            t = Targeting(seed=seed, rollout_bp=percent_to_bp(percent))
            share = 100 * sum(t.admits(Device(d)) for d in DEVICES) / len(DEVICES)
            within += abs(share - percent) <= 1
            sd = 100 * math.sqrt(percent / 100 * (1 - percent / 100) / len(DEVICES))
            z2 += ((share - percent) / sd) ** 2
    pairs = 100 * len(PERCENTS)
    assert within >= 0.97 * pairs, within
    assert 0.8 <= z2 / pairs <= 1.25, z2 / pairs


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
def test_a_device_is_admitted_exactly_from_its_bucket_up(device_id: str, seed: int) -> None:
    """A rollout of ``bp`` basis points admits the devices whose bucket is below ``bp``, no others.

    (That the bucket itself never changes is pinned in test_releases_kernel.py.)
    """
    b = bucket(device_id, seed)
    assert 0 <= b < 10_000
    assert Targeting(seed=seed, rollout_bp=b + 1).admits(Device(device_id))
    assert not Targeting(seed=seed, rollout_bp=b).admits(Device(device_id))
    assert not Targeting(seed=seed + 1, rollout_bp=bucket(device_id, seed + 1)).admits(Device(device_id))


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
