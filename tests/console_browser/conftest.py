"""A real `mpaas demo` server with the demo data, console accounts, an FCM stand-in and
headless Debian chromium driven by Playwright, shared by the console's browser tests.

Skipped, with the reason, when chromium or Playwright is missing. Screenshots go to a
temporary directory (printed), or to MPAAS_CONSOLE_SCREENSHOTS when set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests_support import MPAAS, free_port

CHROMIUM = os.environ.get("MPAAS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "console-test-password"
USERS = {"alice": "admin", "rita": "release-manager", "anna": "analyst", "pete": "push-operator"}
DEMO_USERS = 80
START_TIMEOUT = 180.0
#: The accounts, made before the server starts (SQLite takes one writer at a time, and
#: the starting demo writes): the data directory, the schema, then the four accounts.
MAKE_ACCOUNTS = f"""
from mpaas.cli.operator import load_settings, migrate, prepare_data_dir
from mpaas.cli.users import passwords, run
from mpaas.console.accounts import create_account
from mpaas.identity.audit import Actor

settings = load_settings({{}})
prepare_data_dir(settings)
migrate(settings)

async def make(db):
    for name, role in {USERS!r}.items():
        await create_account(db, passwords(settings), Actor("tests"), username=name, role=role, password={PASSWORD!r})

run(settings, make)
"""


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist registers it; say it here too for runs with -p no:xdist
    config.addinivalue_line("markers", "xdist_group(name): run these tests on one xdist worker")


def _skip_reason() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no chromium at {CHROMIUM} (.ci/run installs Debian's chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[test]')"
    return None


class Stand:
    """The server under test, its admin token and helpers to call it directly."""

    def __init__(self, url: str, data_dir: Path, env: dict[str, str]) -> None:
        self.url = url
        self.data_dir = data_dir
        self.env = env

    @property
    def token(self) -> str:
        return (self.data_dir / "demo-token").read_text().strip()

    def api(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def client(self, path: str, key: str, body: dict[str, Any]) -> Any:
        """A call of the client API with a deployment key (no admin token)."""
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST")
        request.add_header("X-Mpaas-Deployment-Key", key)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def deployment_key(self, channel: str) -> str:
        channels = self.api("GET", "/api/v1/apps/superapp/channels")["items"]
        return str(next(c["deployment_key"] for c in channels if c["name"] == channel))


def _wait_for(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError("the server did not start") from None
            time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def stand() -> Iterator[Stand]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    tmp = Path(tempfile.mkdtemp(prefix="mpaas-console-"))
    data_dir = tmp / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPAAS_")} | {
        "MPAAS_DATA_DIR": str(data_dir),
        "MPAAS_PORT": str(port),
        "MPAAS_LOG_JSON": "false",
        "MPAAS_CONFIG_HOME": str(tmp / "config"),
        "MPAAS_CONSOLE_ARGON2_MEMORY_KIB": "1024",
        "MPAAS_PUSH_POLL_INTERVAL": "0.05",
        "MPAAS_PUSH_BACKOFF_BASE": "0.01",
        "MPAAS_PUSH_BACKOFF_MAX": "0.05",
    }
    fcm_account = tmp / "fcm-account.json"
    fcm_port = free_port()
    fcm = subprocess.Popen(
        [sys.executable, "-m", "mpaas.push.standins", "fcm", "--port", str(fcm_port),
         "--service-account-out", str(fcm_account)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    env |= {
        "MPAAS_FCM_SERVICE_ACCOUNT": str(fcm_account),
        "MPAAS_FCM_ENDPOINT": f"http://127.0.0.1:{fcm_port}",
    }
    log = tmp / "server.log"
    server: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 60
        while not fcm_account.exists():
            assert fcm.poll() is None and time.monotonic() < deadline, "the FCM stand-in did not start"
            time.sleep(0.05)
        accounts = subprocess.run(
            [sys.executable, "-c", MAKE_ACCOUNTS], env=env, capture_output=True, text=True
        )
        assert accounts.returncode == 0, accounts.stderr[-2000:]
        with log.open("wb") as out:
            server = subprocess.Popen(
                [*MPAAS, "demo", "--analytics-users", str(DEMO_USERS)],
                env=env,
                cwd=tmp,
                stdout=out,
                stderr=out,
            )
        url = f"http://127.0.0.1:{port}"
        _wait_for(url, server, log)
        yield Stand(url, data_dir, env)
    finally:
        if server is not None:
            _stop(server)
        _stop(fcm)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(stand: Stand) -> Iterator[Any]:
    """Module-scoped on purpose: Playwright's sync API marks an event loop as running in this
    thread while it is open, and every async test after it on the same worker would fail
    (a session-scoped browser broke 300 tests of the run that followed it on one worker)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    wanted = os.environ.get("MPAAS_CONSOLE_SCREENSHOTS")
    path = Path(wanted) if wanted else Path(tempfile.mkdtemp(prefix="mpaas-console-shots-"))
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {path}")
    return path


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()


AXE = Path(__file__).resolve().parents[2] / "web" / "node_modules" / "axe-core" / "axe.min.js"
#: Counts the painted pixels of every chart canvas on the page.
PAINTED = """() => [...document.querySelectorAll('figure.chart-figure canvas')].map((c) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n += 1;
  return n;
})"""


class Console:
    """What the tests do in a page: sign in, open a page, check charts, run axe-core."""

    def __init__(self, stand: Stand) -> None:
        self.url = stand.url

    def sign_in(self, page: Any, user: str, password: str = PASSWORD) -> None:
        page.goto(self.url + "/console/")
        page.get_by_label("User name").fill(user)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("nav")

    def open(self, page: Any, path: str) -> None:
        page.goto(f"{self.url}/console/{path}")
        page.wait_for_selector("main[data-ready=true]")

    def charts_drawn(self, page: Any) -> list[int]:
        """Wait until every chart reported a finished render; the painted pixels of each."""
        page.wait_for_function(
            "() => [...document.querySelectorAll('figure.chart-figure')].every((f) => f.dataset.chart === 'drawn')"
        )
        return list(page.evaluate(PAINTED))

    def axe_violations(self, page: Any) -> list[dict[str, Any]]:
        """Serious and critical axe-core violations of the page as it is now (the page's
        context must bypass the CSP: axe is injected as a script)."""
        if not page.evaluate("() => typeof window.axe === 'object'"):
            page.add_script_tag(path=str(AXE))
        found = page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        )
        return [v for v in found if v.get("impact") in ("serious", "critical")]


@pytest.fixture(scope="session")
def console(stand: Stand) -> Console:
    return Console(stand)
