"""Built-in UX monitoring events: fixed definitions that every app has, as mPaaS collects them.

Their names start with ``ux.`` (reserved: ``mpaas events define`` refuses them). They
are in ``warn`` mode: an event that does not fit its schema is still recorded, flagged.
"""

from __future__ import annotations

from typing import Any

PREFIX = "ux."
OWNER = "mpaas"

_MS = {"type": "integer", "minimum": 0}
_STR = {"type": "string", "maxLength": 2048}
_PACKAGE = {
    "package_kind": {"enum": ["offline", "bundle", "hotfix"]},
    "package_id": _STR,
    "version": _STR,
    "release_id": {"type": "integer"},
}


def _schema(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


#: name -> (description, properties schema)
BUILTIN: dict[str, tuple[str, dict[str, Any]]] = {
    "ux.app_start": (
        "The app started: cold (a new process) or warm (back from the background).",
        _schema(
            ["start_type", "duration_ms"], {"start_type": {"enum": ["cold", "warm"]}, "duration_ms": _MS}
        ),
    ),
    "ux.crash": (
        "The app crashed; the fingerprint groups crashes with the same stack.",
        _schema(
            ["fingerprint"],
            {
                "fingerprint": _STR,
                "exception_type": _STR,
                "message": _STR,
                "stack": {"type": "string", "maxLength": 16384},
                "fatal": {"type": "boolean"},
                "foreground": {"type": "boolean"},
            },
        ),
    ),
    "ux.anr": (
        "The app did not respond (main thread blocked) for duration_ms.",
        _schema(["duration_ms"], {"duration_ms": _MS, "fingerprint": _STR, "stack": _STR}),
    ),
    "ux.h5_perf": (
        "An H5 page loaded: load time, first contentful paint, white-screen time, "
        "and the offline package (id and version) that served it, if any.",
        _schema(
            ["page", "load_ms"],
            {
                "page": _STR,
                "load_ms": _MS,
                "fcp_ms": _MS,
                "white_screen_ms": _MS,
                "offline_package_id": _STR,
                "offline_package_version": _STR,
            },
        ),
    ),
    "ux.network_error": (
        "A network call failed or answered an error status (0 when there was no answer).",
        _schema(
            ["host", "path_template", "status"],
            {
                "host": _STR,
                "path_template": _STR,
                "method": _STR,
                "status": {"type": "integer", "minimum": 0, "maximum": 999},
                "latency_ms": _MS,
                "error": _STR,
            },
        ),
    ),
    "ux.update_downloaded": (
        "An update package was downloaded (full or delta).",
        _schema(
            ["package_id", "version"],
            {**_PACKAGE, "bytes": {"type": "integer", "minimum": 0}, "delta": {"type": "boolean"}},
        ),
    ),
    "ux.update_installed": (
        "An update package was installed, or failed to install.",
        _schema(
            ["package_id", "version", "success"], {**_PACKAGE, "success": {"type": "boolean"}, "error": _STR}
        ),
    ),
    "ux.push_received": (
        "A push message reached the device.",
        _schema(
            ["push_id"], {"push_id": _STR, "delivery_id": _STR, "provider": {"enum": ["apns", "fcm", "ws"]}}
        ),
    ),
    "ux.push_opened": (
        "The user opened a push message.",
        _schema(["push_id"], {"push_id": _STR, "delivery_id": _STR}),
    ),
}
