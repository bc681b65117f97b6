"""The CLI's user config: which server to talk to, with which token.

Stored as JSON with 0600 permissions in ``$XDG_CONFIG_HOME/mpaas/config.json``
(``~/.config/mpaas/config.json``). ``MPAAS_SERVER`` and ``MPAAS_TOKEN`` override it.
Besides the server and token, ``mpaas login`` keeps the token's name and role, so
``mpaas config show`` can say who the CLI is configured as without a request.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mpaas.cli.errors import CliError

DEFAULT_SERVER = "http://127.0.0.1:8080"


def config_path() -> Path:
    base = (
        os.environ.get("MPAAS_CONFIG_HOME")
        or os.environ.get("XDG_CONFIG_HOME")
        or str(Path.home() / ".config")
    )
    return Path(base) / "mpaas" / "config.json"


def server_url_problem(server: str) -> str | None:
    """Why ``server`` is not a usable base URL (with the fix), or None when it is."""
    parts = urlsplit(server.strip())
    if parts.scheme in ("http", "https") and parts.hostname:
        if parts.query or parts.fragment:
            return f"{server!r} must not have a query or fragment"
        return None
    if "://" not in server:
        return f"{server!r} has no scheme; use http://{server.strip()} (or https://)"
    return f"{server!r} is not an http:// or https:// URL, e.g. http://127.0.0.1:8080"


@dataclass(frozen=True)
class Target:
    server: str
    token: str | None


def read_stored() -> dict[str, Any]:
    """What `mpaas login` stored, or {} when nothing is."""
    path = config_path()
    if not path.exists():
        return {}
    try:
        stored = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    return stored if isinstance(stored, dict) else {}


def load_target() -> Target:
    stored = read_stored()
    server = os.environ.get("MPAAS_SERVER") or stored.get("server") or DEFAULT_SERVER
    problem = server_url_problem(server)
    if problem is not None:
        source = "MPAAS_SERVER" if os.environ.get("MPAAS_SERVER") else str(config_path())
        raise CliError(f"server URL from {source}: {problem}", exit_code=2)
    token = os.environ.get("MPAAS_TOKEN") or stored.get("token")
    return Target(server.rstrip("/"), token)


def save_target(server: str, token: str, *, name: str | None = None, role: str | None = None) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"server": server.rstrip("/"), "token": token, "name": name, "role": role}, fh)
    os.replace(tmp, path)
    return path


def forget_target() -> dict[str, Any]:
    """Delete the stored login; return what was stored (without the token's secret)."""
    stored = read_stored()
    path = config_path()
    if path.exists():
        path.unlink()
    return {k: v for k, v in stored.items() if k != "token"} | {"had_token": bool(stored.get("token"))}


def cli_identity() -> dict[str, Any]:
    """Server and user the CLI is configured for, as `mpaas config show` prints them."""
    stored = read_stored()
    env_server, env_token = os.environ.get("MPAAS_SERVER"), os.environ.get("MPAAS_TOKEN")
    server = env_server or stored.get("server") or DEFAULT_SERVER
    if env_token:
        user = "(token from MPAAS_TOKEN)"
    elif stored.get("token"):
        user = f"{stored.get('name') or '?'} ({stored.get('role') or '?'})"
    else:
        user = None
    return {"cli_config": str(config_path()), "cli_server": server.rstrip("/"), "cli_user": user}
