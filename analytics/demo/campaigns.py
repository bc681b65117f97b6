"""The two things the demo bank does to its users: a release of the ``transfer`` offline
package (update adoption) and a push campaign (sent, delivered, arrived, opened)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from mpaas.analytics.demo.catalogue import NEW_PACKAGE, PACKAGE_ID
from mpaas.analytics.demo.writer import Device, EventWriter

RELEASE_ID = 2
PUSH_ID = "p-wealth-autumn"
#: Share of devices that take the new package at a session once it is released.
TAKE_UPDATE = 0.6
INSTALL_FAILS = 0.03
DELIVERY_FAILS = 0.03
#: Share of delivered pushes that reach the phone, by provider (mpaas's own WebSocket
#: reaches only phones whose app is running), and share of arrived ones opened.
ARRIVES = {"apns": 0.93, "fcm": 0.88, "ws": 0.55}
OPENED = 0.14


def maybe_update(rng: random.Random, out: EventWriter, device: Device, at: datetime) -> datetime:
    """At a session start after the release: maybe download and install the new package.
    Returns the time after the update (the session goes on from there)."""
    if device.package_version == NEW_PACKAGE or rng.random() >= TAKE_UPDATE:
        return at
    common = {"release_id": RELEASE_ID, "package_id": PACKAGE_ID, "version": NEW_PACKAGE, "kind": "offline"}
    size = rng.randint(180_000, 420_000)
    at += timedelta(seconds=rng.uniform(1, 6))
    out.track(
        device,
        "ux.update_downloaded",
        at,
        {**common, "package_kind": "offline", "bytes": size, "delta": True},
    )
    out.server(device, "update.reported", at, {**common, "channel": "production", "status": "downloaded"})
    at += timedelta(seconds=rng.uniform(0.5, 3))
    failed = rng.random() < INSTALL_FAILS
    out.track(
        device,
        "ux.update_installed",
        at,
        {
            **common,
            "package_kind": "offline",
            "success": not failed,
            **({"error": "hash_mismatch"} if failed else {}),
        },
    )
    status = "failed" if failed else "installed"
    out.server(device, "update.reported", at, {**common, "channel": "production", "status": status})
    if not failed:
        device.package_version = NEW_PACKAGE
    return at


def provider_of(rng: random.Random, device: Device) -> str:
    if device.platform == "ios":
        return "apns"
    return "fcm" if rng.random() < 0.2 else "ws"


def push(rng: random.Random, out: EventWriter, device: Device, at: datetime) -> datetime | None:
    """One delivery of the campaign to ``device``; returns when the user opened it, if they did."""
    provider = provider_of(rng, device)
    ids = {"push_id": PUSH_ID, "delivery_id": f"d-{device.index:06d}", "provider": provider}
    at += timedelta(seconds=rng.uniform(0, 240))
    out.server(device, "push.sent", at, ids)
    at += timedelta(seconds=rng.uniform(0.05, 1.5))
    if rng.random() < DELIVERY_FAILS:
        reason = rng.choice(("unregistered", "ttl_expired", "attempts_exhausted"))
        out.server(device, "push.failed", at, {**ids, "reason": reason})
        return None
    out.server(device, "push.delivered", at, ids)
    if rng.random() >= ARRIVES[provider]:
        return None
    at += timedelta(seconds=rng.expovariate(1 / 20))
    out.server(device, "push.arrived", at, ids)
    if rng.random() >= OPENED:
        return None
    # The app reports the receipt itself only once it runs (a background receipt is not use).
    out.track(device, "ux.push_received", at, {"push_id": PUSH_ID, "delivery_id": ids["delivery_id"]})
    at += timedelta(seconds=rng.expovariate(1 / 300))
    out.server(device, "push.opened", at, ids)
    out.track(device, "ux.push_opened", at, {"push_id": PUSH_ID, "delivery_id": ids["delivery_id"]})
    return at
