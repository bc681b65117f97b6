"""The update-check kernel: compiled and pure Python agree, and the fast path agrees with the reference.

``mpaas.packages.releases.check_kernel`` is compiled by Cython at install time (ADR 0007); its
source also runs as plain Python. These tests load the source a second time as a plain
module and compare the two on generated inputs, and compare ``native_check`` (raw bytes,
the packages list found by a scanner and memoised) with ``native_answer`` (the parsed
body, the reference) on each.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpaas.errors import MpaasError
from mpaas.packages.releases import check_kernel as compiled_kernel
from mpaas.packages.releases import kernel_build


def _load_pure(name: str = "mpaas_check_kernel_pure") -> ModuleType:
    source = Path(compiled_kernel.__file__).with_name("check_kernel.py")
    spec = importlib.util.spec_from_file_location(name, source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


pure_kernel = _load_pure()
SOURCE = Path(pure_kernel.__file__)
#: Why a pure-versus-compiled comparison cannot run here (None: it can).
NO_COMPILED_BUILD = (
    None
    if compiled_kernel.COMPILED
    else getattr(compiled_kernel, "STALE_BUILD", None) or "no compiled kernel is installed here"
)
#: The kernels to compare: never the pure build with itself.
KERNELS = [compiled_kernel, pure_kernel] if compiled_kernel.COMPILED else [pure_kernel]


def require_compiled() -> None:
    """Skip, saying why, a test whose point is comparing the compiled build with the source."""
    if NO_COMPILED_BUILD is not None:
        pytest.skip(f"pure-versus-compiled comparison not run: {NO_COMPILED_BUILD}")


def test_the_source_runs_without_cython(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where Cython is not installed, the module imports its no-op shim and still works."""
    monkeypatch.setitem(sys.modules, "cython", None)  # makes `import cython` fail
    shimmed = _load_pure("mpaas_check_kernel_shimmed")
    assert not shimmed.COMPILED
    assert shimmed.bucket("device-0", 1) == compiled_kernel.bucket("device-0", 1)
    table = _table(shimmed)
    body = b'{"device_id":"d1","os":"ios","packages":[{"kind":"bundle","id":"app"}]}'
    assert shimmed.native_check(table, body, 1.0) == pure_kernel.native_check(_table(pure_kernel), body, 1.0)


@pytest.mark.skipif(
    os.environ.get("MPAAS_PURE_PYTHON") == "1" or shutil.which("cc") is None, reason="no compiled build here"
)
def test_the_installed_kernel_is_compiled_from_this_source() -> None:
    """An install with a C compiler must have built the extension from the source as it is now.

    CI fails if the build broke, or if an old extension (a failed rebuild) is still there.
    """
    assert compiled_kernel.COMPILED, NO_COMPILED_BUILD
    assert hashlib.sha256(SOURCE.read_bytes()).hexdigest() == compiled_kernel.BUILT_FROM_SHA256
    assert not pure_kernel.COMPILED


def test_a_stale_extension_hands_over_to_the_source_with_a_warning(tmp_path: Path) -> None:
    """The compiled module, beside a source that changed since its build, loads the source instead."""
    require_compiled()
    extension = Path(compiled_kernel.__file__)
    (tmp_path / "check_kernel.so").write_bytes(extension.read_bytes())
    (tmp_path / "check_kernel.py").write_bytes(SOURCE.read_bytes() + b"\n# edited after the build\n")
    probe = (
        "import importlib.util, logging, sys\n"
        "logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format='%(levelname)s %(message)s')\n"
        f"spec = importlib.util.spec_from_file_location('check_kernel', {str(tmp_path / 'check_kernel.so')!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['check_kernel'] = module\n"
        "spec.loader.exec_module(module)\n"
        "kernel = sys.modules['check_kernel']\n"
        "print('COMPILED', kernel.COMPILED, kernel.bucket('device-0', 42))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING the compiled update-check kernel check_kernel.so was built from" in proc.stdout
    assert "rebuild it" in proc.stdout
    assert proc.stdout.rstrip().endswith("COMPILED False 6969")


def test_a_kernel_without_a_source_beside_it_is_trusted(tmp_path: Path) -> None:
    assert kernel_build.stale_reason(str(tmp_path / "check_kernel.so"), None) is None
    (tmp_path / "check_kernel.py").write_text("x = 1\n")
    assert kernel_build.stale_reason(str(tmp_path / "check_kernel.so"), None) is not None
    digest = hashlib.sha256(b"x = 1\n").hexdigest()
    assert kernel_build.stale_reason(str(tmp_path / "check_kernel.so"), digest) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80), st.integers(min_value=0, max_value=2**40))
def test_buckets_agree(device_id: str, seed: int) -> None:
    require_compiled()
    buckets = {k.bucket(device_id, seed) for k in KERNELS}
    assert len(buckets) == 1 and 0 <= buckets.pop() < 10_000
    assert compiled_kernel.device_hash(device_id) == pure_kernel.device_hash(device_id)
    assert compiled_kernel.combine(seed, seed * 7) == pure_kernel.combine(seed, seed * 7)


def _fmix64(x: int) -> int:
    x ^= x >> 33
    x = x * 0xFF51AFD7ED558CCD % 2**64
    x ^= x >> 33
    x = x * 0xC4CEB9FE1A85EC53 % 2**64
    return x ^ (x >> 33)


def _documented_bucket(device_id: str, seed: int) -> int:
    """docs/protocol.md's formula, written out independently of the kernel."""
    h = 0xCBF29CE484222325
    for byte in device_id.encode():
        h = (h ^ byte) * 0x100000001B3 % 2**64
    release = int.from_bytes(hashlib.sha256(b"mpaas-rollout:%d" % seed).digest()[:8], "big")
    return _fmix64(_fmix64(h) ^ release) % 10_000


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.integers(min_value=0, max_value=2**40))
def test_buckets_follow_the_documented_formula(device_id: str, seed: int) -> None:
    assert compiled_kernel.bucket(device_id, seed) == _documented_bucket(device_id, seed)


def test_bucket_formula_is_pinned() -> None:
    """Changing the formula moves devices in and out of every running rollout: never do it."""
    for k in KERNELS:
        assert [k.bucket(f"device-{i}", 42) for i in range(5)] == [6969, 6483, 5870, 1388, 8053]
        assert k.bucket("device-0", 1) == 2936


# -- the packages scanner ----------------------------------------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.text(alphabet='ab"\\[]{}:,\n é', max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["packages", "x", "k"]), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["packages", "device_id", "os", "x\\", 'q"', "tags"]), json_values, max_size=5
    ),
    st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")]),
)
def test_packages_span_finds_the_top_level_array(doc: dict[str, Any], separators: tuple[str, str]) -> None:
    raw = json.dumps(doc, separators=separators, ensure_ascii=False).encode()
    spans = {k.packages_span(raw) for k in KERNELS}
    assert len(spans) == 1
    span = spans.pop()
    if span is None:
        assert not isinstance(doc.get("packages"), list)
    else:
        start, end = span
        assert json.loads(raw[start:end]) == doc["packages"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"packages":[1],"packages":[2]}',
        b'{"packag\\u0065s":[], "meta":{"packages":[1]}}',
        b'{"meta":{"packages":[1]}}',
        b'{"packages":"no"}',
        b'["packages"]',
        b'{"packages":[1]} x',
        b'{"packages":[1]',
        b"{}",
        b"",
    ],
)
def test_packages_span_refuses_what_it_cannot_vouch_for(raw: bytes) -> None:
    for k in KERNELS:
        assert k.packages_span(raw) is None


# -- native_check against native_answer ----------------------------------------------------

HASHES = ["a" * 64, "b" * 64, "c" * 8, "", None]
IDS = ["app", "home", "pay", "x" * 129]


def _table(k: ModuleType) -> Any:
    """A table over two lineages whose plans depend on the held hash and the binary."""
    tallies: dict[tuple[str, int], Any] = {}

    def build(kind: str, pid: str, digest: str | None, device: Any) -> Any:
        if pid not in ("app", "home"):
            raw = json.dumps({"kind": kind, "id": pid, "action": "none"}).encode()
            return k.NativePlan(k.Plan((), (None,)), (raw,), (len(raw),), (None,), (False,), True)
        base = hash((pid, digest or "-", str(device.os), str(device.app_version))) % 5000
        gates = (
            k.Gate(base + 1000, k.seed_key(base), 0.0, (), frozenset({"vip"}), frozenset()),
            k.Gate(10_000, k.seed_key(base + 1), 0.0),
        )
        raws, digests, counts, quiet = [], [], [], []
        for i in range(3):
            raw = json.dumps({"kind": kind, "id": pid, "from": digest, "os": device.os, "o": i}).encode()
            raws.append(raw)
            digests.append(len(raw) * 1_000_003 + i)
            counts.append(tallies.setdefault((pid, i), k.Tally(i + 1)) if i < 2 else None)
            quiet.append(i == 2)
        return k.NativePlan(
            k.Plan(gates, (None, None, None)), tuple(raws), tuple(digests), tuple(counts), tuple(quiet)
        )

    return k.NativeTable(b'{"channel":"c","packages":[', 7, build, (("bundle", "app"), ("offline", "home")))


def _entry() -> st.SearchStrategy[Any]:
    good = st.fixed_dictionaries(
        {"kind": st.sampled_from(["bundle", "offline", "hotfix"]), "id": st.sampled_from(IDS)},
        optional={"hash": st.sampled_from(HASHES)},
    )
    bad = st.one_of(st.just("junk"), st.fixed_dictionaries({"kind": st.just("apk"), "id": st.just("app")}))
    return st.one_of(good, good, good, bad)


requests = st.fixed_dictionaries(
    {"device_id": st.sampled_from(["vip", "d1", "d2", "", "é" * 3])},
    optional={
        "os": st.sampled_from(["iOS", "android", 7]),
        "app_version": st.sampled_from(["5.3.0", "5.2", "bad version"]),
        "os_version": st.sampled_from(["17.1", "x"]),
        "tags": st.sampled_from([[], ["beta"], "beta"]),
        "discover": st.sampled_from([True, False, "yes"]),
        "packages": st.lists(_entry(), max_size=6),
        "user_id": st.sampled_from(["u1", None]),
    },
)


def _outcome(fn: Any) -> Any:
    try:
        return fn()
    except MpaasError as exc:
        return (type(exc).__name__, exc.code, exc.message)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests, min_size=1, max_size=4), st.sampled_from([(",", ":"), (", ", ": ")]))
def test_native_check_answers_as_the_reference(
    bodies: list[dict[str, Any]], separators: tuple[str, str]
) -> None:
    """Same body, ETag and errors, in both builds; repeated requests exercise the memo."""
    results = []
    for k in KERNELS:
        fast, reference = _table(k), _table(k)
        answers = []
        for body in bodies + bodies:
            raw = json.dumps(body, separators=separators, ensure_ascii=False).encode()
            got = _outcome(lambda raw=raw, k=k, fast=fast: k.native_check(fast, raw, 1.0))  # type: ignore[misc]
            want = _outcome(
                lambda raw=raw, k=k, reference=reference: k.native_answer(reference, orjson.loads(raw), 1.0)
            )  # type: ignore[misc]
            assert got == want, raw
            answers.append(got)
        results.append(answers)
    assert all(r == results[0] for r in results)  # the compiled and pure builds agree


@pytest.mark.parametrize("k", KERNELS, ids=["compiled" if k.COMPILED else "pure" for k in KERNELS])
def test_body_errors_match_the_json_endpoints(k: ModuleType) -> None:
    table = _table(k)
    for raw, message in [
        (b"", "request body is empty; a JSON object was expected"),
        (b"[1]", "request body must be a JSON object"),
        (b'{"device_id":"d","packages":"x"}', "field 'packages' must be a list of at most 500 objects"),
        (
            b'{"device_id":"d","packages":[{"kind":"' + b"x" * 20 + b'","id":"app"}]}',
            "field 'kind' must be a string of at most 16 characters",
        ),
        (
            b'{"device_id":"d","packages":[{"kind":"apk","id":"app"}]}',
            "package kind must be one of offline, bundle, hotfix",
        ),
    ]:
        with pytest.raises(MpaasError) as err:
            k.native_check(table, raw, 1.0)
        assert err.value.message == message
    with pytest.raises(MpaasError) as err:
        k.native_check(table, b"{nope", 1.0)
    assert err.value.code == "invalid_json"
