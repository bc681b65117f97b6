"""A seeded generator of synthetic transfers: honest customers over 30 days plus injected
attacks, each transfer labelled. The same seed gives the same transfers, byte for byte
(``random.Random`` only; no wall clock). Used to train the shipped model (one seed) and by
``bench/risk.py`` to measure the shipped rules and model (another seed).

Attacks (the label of each of their transfers, and of the episode):

- ``card_testing``: a fresh account on a new, often rooted phone sends a burst of tiny
  transfers to many accounts at other banks;
- ``account_takeover``: a customer's account on a phone first seen hours ago empties it in
  one to three large transfers to another bank;
- ``mule_fanout``: a young account forwards money in many medium transfers within hours;
- ``impossible_travel``: minutes after a customer's transfer at home, one from a city more
  than 1,000 km away;
- ``limit_probe``: a new phone sends several transfers of just under 5,000 yuan, just
  under ten an hour, under the shipped rules' thresholds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mpaas.banking.risk.decision import RiskContext

DAY = 86400.0
START = 1_800_000_000.0  # 2027-01-15 00:00 UTC
DAYS = 30
ATTACKS = ("card_testing", "account_takeover", "mule_fanout", "impossible_travel", "limit_probe")
#: (name, lat, lon)
CITIES = (
    ("shanghai", 31.23, 121.47),
    ("beijing", 39.90, 116.40),
    ("guangzhou", 23.13, 113.26),
    ("shenzhen", 22.54, 114.06),
    ("chengdu", 30.57, 104.07),
    ("hangzhou", 30.27, 120.16),
    ("wuhan", 30.59, 114.31),
    ("xian", 34.34, 108.94),
    ("nanjing", 32.06, 118.80),
    ("chongqing", 29.56, 106.55),
)
FAR_CITIES = (
    ("urumqi", 43.83, 87.62),
    ("lhasa", 29.65, 91.14),
    ("harbin", 45.80, 126.53),
    ("kashgar", 39.47, 75.99),
)
MODELS = ("iPhone 15", "iPhone 13", "Pixel 8", "HUAWEI Mate 60", "Xiaomi 14", "OPPO Reno11", "vivo X100")


@dataclass
class Transfer:
    at: float
    txn_id: str
    user: str
    device: str
    device_since: float
    device_model: str
    rooted: bool
    amount: int
    counterparty: str
    external: bool
    ip: str
    place: tuple[float, float] | None
    label: str = "honest"
    episode: str = ""

    def context(self) -> RiskContext:
        """The context a transfer is decided on, as the transfers service builds it."""
        geo: dict[str, Any] = {}
        if self.place is not None:
            geo = {"lat": self.place[0], "lon": self.place[1]}
        return RiskContext(
            txn={
                "id": self.txn_id,
                "amount": self.amount,
                "currency": "CNY",
                "from_account": f"acct_{self.user}",
                "to_account": f"ext:{self.counterparty}" if self.external else f"acct_{self.counterparty}",
                "counterparty": f"bank:{self.counterparty}" if self.external else self.counterparty,
                "external": self.external,
            },
            user={"id": self.user, "tier": "full"},
            device={
                "id": self.device,
                "model": self.device_model,
                "rooted": self.rooted,
                "first_seen_days": round(max(0.0, self.at - self.device_since) / DAY, 3),
            },
            net={"ip": self.ip, "carrier": "CMCC"},
            geo=geo,
        )


@dataclass
class _User:
    id: str
    home: tuple[float, float]
    median: float
    rate: float
    device: str
    device_since: float
    device_model: str
    rooted: bool
    locates: bool
    payees: list[str] = field(default_factory=list)


class Generator:
    def __init__(self, seed: int, total: int = 100_000, attack_share: float = 0.03) -> None:
        self.rng = random.Random(seed)
        self.total, self.attack_share = total, attack_share
        self.out: list[Transfer] = []
        self._n = 0

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n:07d}"

    def _ip(self) -> str:
        r = self.rng
        first = r.choice((36, 58, 101, 112, 117, 183, 223))
        return f"{first}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"

    def _near(self, place: tuple[float, float], km: float) -> tuple[float, float]:
        r = self.rng
        return (round(place[0] + r.gauss(0, km / 111), 5), round(place[1] + r.gauss(0, km / 95), 5))

    def _user(self) -> _User:
        r = self.rng
        city = r.choice(CITIES)
        return _User(
            id=self._id("u_"),
            home=(city[1], city[2]),
            median=math.exp(r.gauss(math.log(30_000), 0.9)),
            rate=r.gammavariate(2.0, 0.45),
            device=self._id("d_"),
            device_since=START - r.uniform(20, 1500) * DAY,
            device_model=r.choice(MODELS),
            rooted=r.random() < 0.02,
            locates=r.random() < 0.8,
            payees=[self._id("p_") for _ in range(r.randint(2, 8))],
        )

    def _emit(self, u: _User, at: float, amount: int, **over: Any) -> Transfer:
        r = self.rng
        external = over.pop("external", r.random() < 0.3)
        t = Transfer(
            at=at,
            txn_id=self._id("t_"),
            user=u.id,
            device=u.device,
            device_since=u.device_since,
            device_model=u.device_model,
            rooted=u.rooted,
            amount=max(1, amount),
            counterparty=over.pop("counterparty", r.choice(u.payees)),
            external=external,
            ip=self._ip(),
            place=self._near(u.home, 8) if u.locates else None,
        )
        for key, value in over.items():
            setattr(t, key, value)
        self.out.append(t)
        return t

    def _amount(self, u: _User) -> int:
        r = self.rng
        value = u.median * math.exp(r.gauss(0, 0.7))
        if r.random() < 0.02:
            value *= r.uniform(5, 25)  # rent, a deposit, a car repair
        return int(round(value / 100) * 100) if r.random() < 0.6 else int(value)

    def _honest(self, u: _User) -> None:
        r = self.rng
        at = START + r.expovariate(u.rate) * DAY
        trip: tuple[float, float, tuple[float, float]] | None = None
        if r.random() < 0.06:  # a trip by train or plane: at most ~500 km/h door to door
            city = r.choice(CITIES)
            leave = START + r.uniform(1, DAYS - 5) * DAY
            trip = (leave, leave + r.uniform(2, 5) * DAY, (city[1], city[2]))
        # a new phone during the month for one in twenty
        new_at = START + r.uniform(0, DAYS) * DAY if r.random() < 0.05 else math.inf
        old = (u.device, u.device_since, u.device_model)
        while at < START + DAYS * DAY:
            hour = (at % DAY) / 3600
            if 1 <= hour < 7:  # most people sleep
                at += (7 - hour) * 3600 + r.uniform(0, 3600)
                continue
            if at >= new_at and u.device == old[0]:
                u.device, u.device_since, u.device_model = self._id("d_"), new_at, r.choice(MODELS)
            home, locates = u.home, u.locates
            if trip is not None and trip[0] + 4 * 3600 <= at < trip[1]:
                u.home = trip[2]
            elif trip is not None and (
                trip[0] <= at < trip[0] + 4 * 3600 or trip[1] <= at < trip[1] + 4 * 3600
            ):
                u.locates = False  # on the way: no fix
            self._emit(u, at, self._amount(u))
            if r.random() < 0.03:  # splitting a bill: a few transfers within half an hour
                for _ in range(r.randint(2, 6)):
                    self._emit(u, at + r.uniform(60, 1800), int(u.median * r.uniform(0.2, 1.0)))
            u.home, u.locates = home, locates
            at += r.expovariate(u.rate) * DAY

    def _fresh_device(self, at: float, hours: float) -> dict[str, Any]:
        r = self.rng
        return {
            "device": self._id("d_"),
            "device_since": at - r.uniform(0.05, hours) * 3600,
            "device_model": r.choice((*MODELS, "generic_x86", "SM-G9900")),
        }

    def _attack(self, kind: str, users: list[_User]) -> None:
        r = self.rng
        episode = self._id("e_")
        at = START + r.uniform(1, DAYS - 1) * DAY
        mark = {"label": kind, "episode": episode}
        if kind == "card_testing":
            u = self._user()
            u.locates = r.random() < 0.3
            dev = self._fresh_device(at, 48) | {"rooted": r.random() < 0.6}
            for _ in range(r.randint(12, 40)):
                at += r.uniform(20, 120)
                self._emit(
                    u, at, r.randint(100, 2000), external=True, counterparty=self._id("p_"), **dev, **mark
                )
        elif kind == "account_takeover":
            u = r.choice(users)
            dev = self._fresh_device(at, 6) | {"rooted": r.random() < 0.2}
            city = r.choice(CITIES)
            place = self._near((city[1], city[2]), 10) if r.random() < 0.5 else None
            for _ in range(r.randint(1, 3)):
                amount = r.randint(200_000, 499_999) if r.random() < 0.4 else r.randint(500_000, 5_000_000)
                at += r.uniform(60, 900)
                self._emit(
                    u, at, amount, external=True, counterparty=self._id("p_"), place=place, **dev, **mark
                )
        elif kind == "mule_fanout":
            u = self._user()
            u.device_since = at - r.uniform(1, 20) * DAY
            for _ in range(r.randint(1, 3)):  # a short, quiet history
                self._emit(u, at - r.uniform(1, 10) * DAY, self._amount(u))
            for _ in range(r.randint(8, 25)):
                at += r.uniform(120, 900)
                self._emit(
                    u, at, r.randint(50_000, 499_999), external=True, counterparty=self._id("p_"), **mark
                )
        elif kind == "impossible_travel":
            u = r.choice([x for x in users if x.locates] or users)
            u.locates = True
            self._emit(u, at, self._amount(u))
            far = r.choice(FAR_CITIES)
            dev = self._fresh_device(at, 200) if r.random() < 0.5 else {}
            self._emit(
                u,
                at + r.uniform(300, 5400),
                r.randint(50_000, 800_000),
                external=True,
                counterparty=self._id("p_"),
                place=self._near((far[1], far[2]), 5),
                **dev,
                **mark,
            )
        elif kind == "limit_probe":
            u = r.choice(users)
            dev = self._fresh_device(at, 20)
            for _ in range(r.randint(3, 9)):
                at += r.uniform(200, 420)
                self._emit(
                    u,
                    at,
                    r.randint(480_000, 499_999),
                    external=True,
                    counterparty=self._id("p_"),
                    **dev,
                    **mark,
                )

    def run(self) -> list[Transfer]:
        users: list[_User] = []
        honest_target = int(self.total * (1 - self.attack_share))
        while len(self.out) < honest_target:
            u = self._user()
            users.append(u)
            self._honest(u)
        del self.out[honest_target:]
        n = 0
        while len(self.out) < self.total:  # as many episodes of each attack
            self._attack(ATTACKS[n % len(ATTACKS)], users)
            n += 1
        del self.out[self.total :]
        self.out.sort(key=lambda t: (t.at, t.txn_id))
        return self.out


def transfers(seed: int, total: int = 100_000, attack_share: float = 0.03) -> list[Transfer]:
    """``total`` transfers over 30 days, in time order; deterministic per ``seed``."""
    return Generator(seed, total, attack_share).run()


def episodes(items: list[Transfer]) -> Iterator[tuple[str, str, list[Transfer]]]:
    """(episode, attack, its transfers) for every attack episode."""
    by: dict[str, list[Transfer]] = {}
    for t in items:
        if t.episode:
            by.setdefault(t.episode, []).append(t)
    for episode, group in by.items():
        yield episode, group[0].label, group
