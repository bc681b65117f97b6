"""The demo generator: users in four tiers living through ``days`` days of a bank app.

Deterministic: each user draws from their own ``random.Random`` seeded with the run's
seed and their index, so the same (seed, users, days, end) gives the same events.
Days are Asia/Shanghai days; every event happens before ``end``.
"""

from __future__ import annotations

import gc
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mpaas.analytics.demo import campaigns
from mpaas.analytics.demo.catalogue import (
    APP_VERSIONS,
    CRASHES,
    DEVICES,
    ENDPOINTS,
    ERROR_STATUSES,
    HOUR_WEIGHTS,
    HOURS,
    JOURNEYS,
    LOCAL_OFFSET_HOURS,
    OLD_PACKAGE,
    OS_VERSIONS,
    PACKAGE_ID,
    PACKAGE_SPEED,
    TIER_RANK,
    TIERS,
    Journey,
)
from mpaas.analytics.demo.writer import Device, EventWriter

#: How engaged each tier is: the chance of coming back on a given day, before decay.
ENGAGEMENT = {"visitor": 0.10, "registered": 0.22, "e_account": 0.32, "full_customer": 0.45}
#: The share of users already using the app on the first day of the window.
EXISTING_USERS = 0.35


@dataclass(frozen=True)
class DemoSpec:
    """What to generate: ``users`` people over the ``days`` local days that end with ``end``'s."""

    end: datetime
    app: str = "superapp"
    users: int = 2000
    days: int = 30
    seed: int = 7

    @property
    def first_day(self) -> datetime:
        """Local midnight of day 0, in UTC."""
        local_end = self.end.astimezone(UTC) + timedelta(hours=LOCAL_OFFSET_HOURS)
        midnight = datetime(local_end.year, local_end.month, local_end.day, tzinfo=UTC)
        return midnight - timedelta(days=self.days - 1, hours=LOCAL_OFFSET_HOURS)

    @property
    def release_day(self) -> int:
        return max(1, self.days - 10)

    @property
    def campaign_day(self) -> int:
        return max(1, self.days - 5)

    def at(self, day: int, hour: float) -> datetime:
        return self.first_day + timedelta(days=day, hours=hour)


def generate(spec: DemoSpec) -> EventWriter:
    out = EventWriter(spec.app, until=spec.end)
    gc.disable()  # many small tuples and no cycles: the collector would only slow this down
    try:
        for index in range(spec.users):
            _User(spec, out, index).live()
    finally:
        gc.enable()
    return out


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0, sigma))


def _shipped(day: int) -> list[tuple[str, int, float, float]]:
    return [v for v in APP_VERSIONS if v[1] <= day]


class _User:
    """One person and their phone, day by day."""

    def __init__(self, spec: DemoSpec, out: EventWriter, index: int) -> None:
        self.spec, self.out = spec, out
        self.rng = rng = random.Random(f"{spec.seed}:{index}")
        self.tier = rng.choices([t for t, _ in TIERS], [w for _, w in TIERS])[0]
        platform, os_name, model, _share, self.speed = rng.choices(DEVICES, [d[3] for d in DEVICES])[0]
        existing = rng.random() < EXISTING_USERS
        self.first = rng.randint(0, 2) if existing else rng.randint(0, spec.days - 1)
        shipped = _shipped(self.first)
        version = shipped[-1] if not existing else rng.choices(shipped, range(1, len(shipped) + 1))[0]
        self.device = Device(
            index, platform, os_name, rng.choice(OS_VERSIONS[platform]), model, version[0], OLD_PACKAGE
        )
        self.engagement = min(0.9, ENGAGEMENT[self.tier] * rng.uniform(0.5, 1.5))
        self.journeys = [j for j in JOURNEYS if TIER_RANK[j.min_tier] <= TIER_RANK[self.tier]]

    # -- days and sessions ---------------------------------------------------------------

    def live(self) -> None:
        spec, rng = self.spec, self.rng
        for day in range(self.first, spec.days):
            since = day - self.first
            active = not since or rng.random() < self.engagement * (0.35 + 0.65 * math.exp(-since / 4))
            starts: list[datetime] = []
            if active:
                count = 1 + (rng.random() < 0.35) + (rng.random() < 0.1)
                starts = [spec.at(day, self._hour()) for _ in range(count)]
            pushed: datetime | None = None
            if day == spec.campaign_day and self.device.user_id is not None:
                pushed = campaigns.push(rng, self.out, self.device, spec.at(day, 10))
            if pushed is not None:
                starts.append(pushed)
            starts.sort()
            self._upgrade_app(day)
            for n, start in enumerate(starts):
                if start >= spec.end:
                    break
                self._session(
                    start, first_today=n == 0, from_push=start == pushed, first_ever=since == 0 and n == 0
                )

    def _hour(self) -> float:
        return self.rng.choices(HOURS, HOUR_WEIGHTS)[0] + self.rng.random()

    def _upgrade_app(self, day: int) -> None:
        latest = _shipped(day)[-1][0]
        if latest != self.device.app_version and self.rng.random() < 0.15:
            self.device.app_version = latest

    def _session(self, start: datetime, *, first_today: bool, from_push: bool, first_ever: bool) -> None:
        rng, out, device = self.rng, self.out, self.device
        version = next(v for v in APP_VERSIONS if v[0] == device.app_version)
        cold = first_today or rng.random() < 0.3
        median = 1300 * version[2] if cold else 320
        duration = round(_lognormal(rng, median * self.speed, 0.35))
        out.track(
            device, "ux.app_start", start, {"start_type": "cold" if cold else "warm", "duration_ms": duration}
        )
        at = start + timedelta(milliseconds=duration)
        if start >= self.spec.at(self.spec.release_day, 10):
            at = campaigns.maybe_update(rng, out, device, at)
        at = self._step(at, 3)
        out.track(device, "home.viewed", at)
        if first_ever and TIER_RANK[self.tier] >= TIER_RANK["registered"]:
            at = self._step(at, 20)
            out.identify(device, f"u-{device.index:06d}", at, {"tier": self.tier})
        crash_at = rng.random() < version[3] * (1.5 if device.platform == "android" else 1.0)
        if device.platform == "android" and rng.random() < 0.006 * self.speed:
            out.track(
                device,
                "ux.anr",
                self._step(at, 30),
                {"duration_ms": round(_lognormal(rng, 6000, 0.4)), "fingerprint": "anr-main-thread-io"},
            )
        for host, path, chance in ENDPOINTS:
            if rng.random() < chance:
                out.track(
                    device,
                    "ux.network_error",
                    self._step(at, 40),
                    {
                        "host": host,
                        "path_template": path,
                        "status": rng.choice(ERROR_STATUSES),
                        "method": "POST",
                        "latency_ms": round(_lognormal(rng, 900, 0.8)),
                    },
                )
        chosen = [self._pick("wealth_purchase")] if from_push else self._choose()
        for journey in chosen:
            if journey is None:
                continue
            at = self._journey(journey, self._step(at, 15))
            if crash_at and rng.random() < 0.5:
                break
        if crash_at:
            fingerprint, exc_type, message = rng.choice(CRASHES)
            out.track(
                device,
                "ux.crash",
                self._step(at, 10),
                {
                    "fingerprint": fingerprint,
                    "exception_type": exc_type,
                    "message": message,
                    "fatal": True,
                    "foreground": True,
                },
            )

    def _step(self, at: datetime, median_seconds: float) -> datetime:
        return at + timedelta(seconds=_lognormal(self.rng, median_seconds, 0.7))

    def _pick(self, name: str) -> Journey | None:
        return next((j for j in self.journeys if j.name == name), None)

    def _choose(self) -> list[Journey | None]:
        rng = self.rng
        if self.tier == "visitor":
            return [self._pick("account_opening")] if rng.random() < 0.15 else []
        count = rng.choice((0, 1, 1, 1, 2, 2, 3))
        return list(rng.choices(self.journeys, [j.weight for j in self.journeys], k=count))

    def _journey(self, journey: Journey, at: datetime) -> datetime:
        rng, out, device = self.rng, self.out, self.device
        if journey.page is not None:
            version = device.package_version
            load = round(_lognormal(rng, 650 * PACKAGE_SPEED[version] * self.speed, 0.45))
            out.track(
                device,
                "ux.h5_perf",
                at,
                {
                    "page": journey.page,
                    "load_ms": load,
                    "fcp_ms": round(load * 0.6),
                    "white_screen_ms": round(load * rng.uniform(0.2, 0.5)),
                    "offline_package_id": PACKAGE_ID,
                    "offline_package_version": version,
                },
            )
        amount = rng.choice((5_000, 20_000, 50_000, 100_000, 500_000, 2_000_000))
        for n, step in enumerate(journey.steps):
            props: dict[str, object] = {"journey": journey.name}
            if "amount" in step or step.endswith((".confirmed", ".succeeded")):
                props["amount_fen"] = amount
            out.track(device, step, at, props)
            if n == len(journey.steps) - 1 or rng.random() >= journey.go_on[n]:
                break
            at = self._step(at, 12)
        return at
