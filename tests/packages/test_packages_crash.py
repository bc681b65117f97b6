"""The CLI's publish against a real server process: progress, --json, resume, and kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpaas.settings import Settings
from tests_support import free_port

MPAAS = [sys.executable, "-m", "mpaas.cli.main"]


class Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.url = f"http://127.0.0.1:{env['MPAAS_PORT']}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*MPAAS, "server"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, "server exited"
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


def cli(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*MPAAS, *args], env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def server_env(settings: Settings, tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPAAS_")}
    env |= {
        "MPAAS_DATA_DIR": str(settings.data_dir),
        "MPAAS_DATABASE_URL": settings.database_url,
        "MPAAS_PORT": str(free_port()),
        "MPAAS_CONFIG_HOME": str(tmp_path / "cfg"),
        "MPAAS_CACHE_HOME": str(tmp_path / "cache"),
        "MPAAS_LOG_JSON": "false",
    }
    token = cli(["init"], env).stdout.strip()
    server = Server(env)
    server.start()
    env |= {"MPAAS_SERVER": server.url, "MPAAS_TOKEN": token}
    cli(["apps", "create", "bank", "--platform", "android"], env)
    try:
        yield server, env
    finally:
        server.stop()


def write_tree(root: Path, files: int, salt: str = "") -> Path:
    for i in range(files):
        path = root / f"d{i % 20}" / f"f{i}.js"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"// {salt} {i}\n" + "x" * (i % 300))
    (root / "index.html").write_text("<html></html>")
    return root


def test_publish_json_and_idempotent_rerun(server_env: tuple[Server, dict[str, str]], tmp_path: Path) -> None:
    _server, env = server_env
    tree = write_tree(tmp_path / "v1", 50)
    args = [
        "publish",
        str(tree),
        "--app",
        "bank",
        "--kind",
        "offline",
        "--id",
        "transfer",
        "--version",
        "1.0.0",
    ]
    first = json.loads(cli([*args, "--json"], env).stdout)
    assert first["created"] is True and first["file_count"] == 51
    assert set(first) >= {"id", "version", "package_hash", "size", "file_count"}
    again = cli(args, env)
    assert "already published" in again.stdout
    tree2 = write_tree(tmp_path / "v1b", 50, salt="other")
    clash = cli(["publish", str(tree2), *args[2:]], env, check=False)
    assert clash.returncode == 1 and "already published with different content" in clash.stderr
    listed = json.loads(cli(["packages", "list", "--app", "bank", "--json"], env).stdout)
    assert [p["version"] for p in listed["items"]] == ["1.0.0"]
    bad = cli(
        ["publish", str(tree), "--app", "bank", "--kind", "hotfix", "--id", "x", "--version", "1"],
        env,
        check=False,
    )
    assert (
        bad.returncode == 1
        and bad.stderr.startswith("error: a hotfix needs")
        and "Traceback" not in bad.stderr
    )


def test_sigkill_during_publish_leaves_nothing_visible_and_retry_succeeds(
    server_env: tuple[Server, dict[str, str]], settings: Settings, tmp_path: Path
) -> None:
    server, env = server_env
    tree = write_tree(tmp_path / "big", 3000)
    args = [
        "publish",
        str(tree),
        "--app",
        "bank",
        "--kind",
        "offline",
        "--id",
        "big",
        "--version",
        "1.0.0",
        "--json",
    ]
    publisher = subprocess.Popen([*MPAAS, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    blob_root = settings.data_dir / "blobs" / "sha256"
    deadline = time.monotonic() + 120
    # Wait until the server is in the middle of storing this package's files, then kill it.
    while not (blob_root.exists() and sum(1 for _ in blob_root.rglob("*")) > 200):
        assert publisher.poll() is None, publisher.communicate()
        assert time.monotonic() < deadline, "publish never reached the store phase"
        time.sleep(0.02)
    server.kill9()
    _out, err = publisher.communicate(timeout=60)
    assert publisher.returncode != 0
    assert err.decode().startswith("error:")

    server.start()
    listed = json.loads(cli(["packages", "list", "--app", "bank", "--json"], env).stdout)
    assert listed["items"] == [], "a killed publish must leave no visible package"

    retry = json.loads(cli(args, env).stdout)
    assert retry["created"] is True and retry["file_count"] == 3001
    shown = json.loads(
        cli(["packages", "show", "big", "1.0.0", "--app", "bank", "--files", "--json"], env).stdout
    )
    assert len(shown["files"]) == 3001


def chunk_puts(server: Server) -> int:
    with urllib.request.urlopen(server.url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith("mpaas_http_requests_total{") and 'method="PUT"' in line and "/chunks" in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def test_interrupted_cli_upload_resumes_from_the_server_offset(
    server_env: tuple[Server, dict[str, str]], settings: Settings, tmp_path: Path
) -> None:
    server, env = server_env
    # Small chunks make the upload many requests long, so it can be interrupted half-way.
    server.stop()
    env = env | {"MPAAS_MAX_BODY_BYTES": str(256 * 1024)}
    server.env = env
    server.start()
    payload = tmp_path / "big.tar.gz"
    import tarfile

    with tarfile.open(payload, "w:gz", compresslevel=0) as tf:
        blob = tmp_path / "blob.bin"
        blob.write_bytes(os.urandom(12 << 20))
        tf.add(blob, "assets/blob.bin")
        (tmp_path / "index.html").write_text("<html></html>")
        tf.add(tmp_path / "index.html", "index.html")
    size = payload.stat().st_size
    args = [
        "publish",
        str(payload),
        "--app",
        "bank",
        "--kind",
        "offline",
        "--id",
        "media",
        "--version",
        "1",
        "--json",
    ]
    uploads = settings.data_dir / "uploads"
    proc = subprocess.Popen([*MPAAS, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120

    def received() -> int:
        return max((p.stat().st_size for p in uploads.glob("*.part")), default=0)

    while received() <= size // 3:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    sent_before = chunk_puts(server)
    assert 0 < sent_before * 256 * 1024 < size

    result = json.loads(cli(args, env).stdout)
    assert result["created"] is True and result["file_count"] == 2
    resumed = chunk_puts(server) - sent_before
    full = -(-size // (256 * 1024))
    assert resumed < full, f"the retry sent {resumed} chunks; a restart from zero needs {full}"
