"""The CLI's user config: which server to talk to, with which token.

Stored as JSON with 0600 permissions in ``$XDG_CONFIG_HOME/mpaas/config.json``
(``~/.config/mpaas/config.json``). ``MPAAS_SERVER`` and ``MPAAS_TOKEN`` override it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from mpaas.cli.errors import CliError

DEFAULT_SERVER = "http://127.0.0.1:8080"


def config_path() -> Path:
    base = (
        os.environ.get("MPAAS_CONFIG_HOME")
        or os.environ.get("XDG_CONFIG_HOME")
        or str(Path.home() / ".config")
    )
    return Path(base) / "mpaas" / "config.json"


@dataclass(frozen=True)
class Target:
    server: str
    token: str | None


def load_target() -> Target:
    stored: dict[str, str] = {}
    path = config_path()
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CliError(f"cannot read {path}: {exc}") from None
    server = os.environ.get("MPAAS_SERVER") or stored.get("server") or DEFAULT_SERVER
    token = os.environ.get("MPAAS_TOKEN") or stored.get("token")
    return Target(server.rstrip("/"), token)


def save_target(server: str, token: str) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"server": server.rstrip("/"), "token": token}, fh)
    os.replace(tmp, path)
    return path
