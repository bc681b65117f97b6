"""The CLI's publish against a real server process: progress, --json, resume, and kill -9.

The publishes that are killed run as subprocesses; the others run the CLI in-process
(`mpaas`), except where a one-line error on a real stderr is the point (`cli`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from mpaas.settings import Settings
from tests_support import MPAAS, Server, cli
from tests_support import cli_in_process as mpaas


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
    first = json.loads(mpaas([*args, "--json"], env).stdout)
    assert first["created"] is True and first["file_count"] == 51
    assert set(first) >= {"id", "version", "package_hash", "size", "file_count"}
    again = mpaas(args, env)
    assert "already published" in again.stdout
    tree2 = write_tree(tmp_path / "v1b", 50, salt="other")
    clash = mpaas(["publish", str(tree2), *args[2:]], env, check=False)
    assert clash.returncode == 1 and "already published with different content" in clash.stderr
    listed = json.loads(mpaas(["packages", "list", "--app", "bank", "--json"], env).stdout)
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


#: Files of the package killed mid-publish: enough that storing them takes a while.
CRASH_FILES = 1200


def test_sigkill_during_publish_leaves_nothing_visible_and_retry_succeeds(
    server_env: tuple[Server, dict[str, str]], settings: Settings, tmp_path: Path
) -> None:
    server, env = server_env
    tree = write_tree(tmp_path / "big", CRASH_FILES)
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

    def stored() -> int:
        return sum(1 for p in blob_root.rglob("*") if p.is_file()) if blob_root.exists() else 0

    deadline = time.monotonic() + 120
    # Once the server is storing this package's files, freeze it: the state checked is the state killed.
    while stored() < 20:
        assert publisher.poll() is None, publisher.communicate()
        assert time.monotonic() < deadline, "publish never reached the store phase"
        time.sleep(0.005)
    server.freeze()
    at_kill = stored()
    server.kill9()
    _out, err = publisher.communicate(timeout=60)
    assert publisher.returncode != 0
    assert err.decode().startswith("error:")

    server.start()
    listed = json.loads(mpaas(["packages", "list", "--app", "bank", "--json"], env).stdout)
    assert listed["items"] == [], "a killed publish must leave no visible package"

    retry = json.loads(mpaas(args, env).stdout)
    assert retry["created"] is True and retry["file_count"] == CRASH_FILES + 1
    shown = json.loads(
        mpaas(["packages", "show", "big", "1.0.0", "--app", "bank", "--files", "--json"], env).stdout
    )
    assert len(shown["files"]) == CRASH_FILES + 1
    assert at_kill < stored(), "the store phase was over before the kill: nothing was interrupted"


def chunk_puts(server: Server) -> int:
    with urllib.request.urlopen(server.url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith("mpaas_http_requests_total{") and 'method="PUT"' in line and "/chunks" in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


#: Chunks are at most the server's body limit: small ones make an upload many requests long.
CHUNK = 128 * 1024


@pytest.mark.server_env(MPAAS_MAX_BODY_BYTES=str(CHUNK))
def test_interrupted_cli_upload_resumes_from_the_server_offset(
    server_env: tuple[Server, dict[str, str]], settings: Settings, tmp_path: Path
) -> None:
    server, env = server_env
    payload = tmp_path / "big.tar.gz"
    with tarfile.open(payload, "w:gz", compresslevel=0) as tf:
        blob = tmp_path / "blob.bin"
        blob.write_bytes(os.urandom(6 << 20))
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
        time.sleep(0.005)
    proc.send_signal(signal.SIGSTOP)  # the CLI holds where it is: what is checked below is what is killed
    sent_before = chunk_puts(server)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert 0 < sent_before * CHUNK < size, "the upload was over before the kill: nothing was interrupted"

    result = json.loads(mpaas(args, env).stdout)
    assert result["created"] is True and result["file_count"] == 2
    resumed = chunk_puts(server) - sent_before
    full = -(-size // CHUNK)
    assert resumed < full, f"the retry sent {resumed} chunks; a restart from zero needs {full}"
