"""The update check's per-request work: rollout buckets, gates, and the native answer loop.

This module is ordinary Python, and it is also written in Cython's pure-Python mode:
where a C compiler is available, ``pip install`` compiles it to an extension module
that Python imports in its place (``setup.py``; ADR 0007). The two builds behave the
same (a property test runs both); the compiled one is what lets a poll cost less than
the HTTP framework around it. ``mpaas.packages.releases.check_kernel.COMPILED`` says which one
is running.

Only work that runs on every poll lives here. Everything that can be decided once per
index build (which releases are candidates for a held release and binary, the answer
fragments, their digests) is prepared by :mod:`mpaas.packages.releases.channel_index` and
:mod:`mpaas.packages.protocols.native`, and cached.

It stays one module despite its length: Cython compiles one module to one extension,
where calls between its functions are direct C calls; split, each call across modules
would go back through Python objects on the hot path.
"""

import hashlib
from collections.abc import Callable
from typing import Any

try:
    import cython
except ImportError:  # pragma: no cover - Cython is only needed to compile this module
    from mpaas.packages.releases import cython_shim as cython
if cython.compiled:
    from cython.cimports.libc.string import memchr, memcmp

import orjson

from mpaas.errors import BadRequest, ValidationError
from mpaas.packages.models import KINDS
from mpaas.packages.semver import InvalidVersion, Version

COMPILED: bool = cython.compiled
#: The sha256 of the source a compiled build was made from: setup.py writes it into the copy
#: it compiles (see kernel_build). Keep this line exactly as it is: setup.py looks for it.
BUILT_FROM_SHA256 = None
BUCKETS = 10_000
_BUCKETS = cython.declare(cython.ulonglong, 10_000)
_MASK = cython.declare(cython.ulonglong, 0xFFFFFFFFFFFFFFFF)
_GOLDEN = cython.declare(cython.ulonglong, 0x9E3779B97F4A7C15)
MAX_PACKAGES = 500
MAX_TAGS = 50
_KINDS = cython.declare(frozenset, frozenset(KINDS))
#: Plans kept per native table before the memo starts over.
MAX_NATIVE_PLANS = 65_536


# -- buckets ---------------------------------------------------------------------------


def _u64(digest: bytes) -> int:
    return int.from_bytes(digest[:8], "big")


@cython.ccall
def device_hash(device_id: str) -> cython.ulonglong:
    """The device's 64-bit key: FNV-1a over its UTF-8 bytes, finalised by :func:`_mix`.

    Computed once per check, however many releases the device meets; not a secret, and
    not meant to be one (a client chooses its own device id).
    """
    raw: bytes = device_id.encode()
    n: cython.Py_ssize_t = len(raw)
    i: cython.Py_ssize_t
    c: cython.uchar
    h: cython.ulonglong = 0xCBF29CE484222325
    prime: cython.ulonglong = 0x100000001B3
    for i in range(n):
        c = raw[i]
        h ^= c
        h = (h * prime) & _MASK  # a no-op in C, where the product wraps
    return _mix(h, 0)


def seed_key(seed: int) -> int:
    """A release seed's 64-bit key: the first 8 bytes of ``sha256("mpaas-rollout:{seed}")``."""
    return _u64(hashlib.sha256(b"mpaas-rollout:%d" % seed).digest())


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _mix(h: cython.ulonglong, k: cython.ulonglong) -> cython.ulonglong:
    """MurmurHash3's 64-bit finaliser of ``h XOR k``: a bijection with full avalanche."""
    x: cython.ulonglong = h ^ k
    c1: cython.ulonglong = 0xFF51AFD7ED558CCD
    c2: cython.ulonglong = 0xC4CEB9FE1A85EC53
    x ^= x >> 33
    x = (x * c1) & _MASK
    x ^= x >> 33
    x = (x * c2) & _MASK
    x ^= x >> 33
    return x


def bucket_of(device_key: int, release_key: int) -> int:
    """The bucket 0 … 9,999 of a device (:func:`device_hash`) for a release (:func:`seed_key`).

    Never change this formula: it decides which devices are in every running rollout.
    """
    return int(_mix(device_key, release_key) % _BUCKETS)


def bucket(device_id: str, seed: int) -> int:
    return bucket_of(device_hash(device_id), seed_key(seed))


def combine(h: int, digest: int) -> int:
    """One step of the order-dependent digest of an answer's fragments (its ETag)."""
    return int(_mix(h, digest))


# -- the device ------------------------------------------------------------------------


@cython.cclass
class Device:
    """What a client says about itself in an update check."""

    device_id = cython.declare(str, visibility="public")
    user_id = cython.declare(object, visibility="public")
    os = cython.declare(object, visibility="public")
    os_version = cython.declare(object, visibility="public")
    model = cython.declare(object, visibility="public")
    region = cython.declare(object, visibility="public")
    app_version = cython.declare(object, visibility="public")
    tags = cython.declare(frozenset, visibility="public")
    tier = cython.declare(object, visibility="public")

    def __init__(
        self,
        device_id: str,
        user_id: str | None = None,
        os: str | None = None,
        os_version: Version | None = None,
        model: str | None = None,
        region: str | None = None,
        app_version: Version | None = None,
        tags: frozenset[str] = frozenset(),
        tier: str | None = None,
    ) -> None:
        self.device_id = device_id
        self.user_id = user_id
        self.os = os
        self.os_version = os_version
        self.model = model
        self.region = region
        self.app_version = app_version
        self.tags = tags
        self.tier = tier

    def __repr__(self) -> str:
        return f"Device({self.device_id!r}, os={self.os!r}, app_version={self.app_version!r})"


@cython.cclass
class Probe:
    """A device as the gates see it: its :class:`Device` and, once needed, its hash."""

    device = cython.declare(object, visibility="public")
    _key: cython.ulonglong
    _hashed: cython.bint

    def __init__(self, device: Device) -> None:
        self.device = device
        self._hashed = False
        self._key = 0

    @cython.ccall
    def key(self) -> cython.ulonglong:
        if not self._hashed:
            self._key = device_hash(self.device.device_id)
            self._hashed = True
        return self._key


# -- gates and plans -------------------------------------------------------------------


@cython.cclass
class Gate:
    """One candidate release's audience: whitelist, start time, rules, rollout share.

    ``rules`` are :class:`mpaas.packages.releases.rollout.Rule` objects (anything with
    ``test(device) -> bool``).
    """

    rollout_bp = cython.declare(cython.int, visibility="readonly")
    release_key = cython.declare(cython.ulonglong, visibility="readonly")
    starts_at = cython.declare(cython.double, visibility="readonly")
    unconditional = cython.declare(cython.bint, visibility="readonly")
    device_ids = cython.declare(frozenset, visibility="readonly")
    user_ids = cython.declare(frozenset, visibility="readonly")
    rules = cython.declare(tuple, visibility="readonly")
    _listed: cython.bint

    def __init__(
        self,
        rollout_bp: int,
        release_key: int,
        starts_at: float = 0.0,
        rules: tuple[Any, ...] = (),
        device_ids: frozenset[str] = frozenset(),
        user_ids: frozenset[str] = frozenset(),
        unconditional: bool = False,
    ) -> None:
        self.rollout_bp = rollout_bp
        self.release_key = release_key
        self.starts_at = starts_at
        self.rules = tuple(rules)
        self.device_ids = frozenset(device_ids)
        self.user_ids = frozenset(user_ids)
        self.unconditional = unconditional
        self._listed = bool(self.device_ids or self.user_ids)

    @cython.ccall
    def admits(self, probe: Probe, now: cython.double) -> cython.bint:
        """Unconditional, whitelisted, or started, passing every rule and inside the share."""
        if self.unconditional:
            return True
        d = probe.device
        if self._listed and (
            d.device_id in self.device_ids or (d.user_id is not None and d.user_id in self.user_ids)
        ):
            return True
        bp: cython.longlong = self.rollout_bp
        if bp <= 0 or self.starts_at > now:
            return False
        if self.rules:
            for rule in self.rules:
                if not rule.test(d):
                    return False
        if bp >= 10_000:
            return True
        return cython.cast(cython.longlong, _mix(probe.key(), self.release_key) % _BUCKETS) < bp


@cython.cclass
class Plan:
    """A lineage's candidates, newest first, for one (held release, binary): see channel_index.

    ``outcomes[i]`` is what the device gets if ``gates[i]`` is the first gate admitting
    it; ``outcomes[-1]`` if none does.
    """

    gates = cython.declare(tuple, visibility="readonly")
    outcomes = cython.declare(tuple, visibility="readonly")
    _n: cython.Py_ssize_t

    def __init__(self, gates: tuple[Gate, ...], outcomes: tuple[Any, ...]) -> None:
        if len(outcomes) != len(gates) + 1:
            raise ValueError("a plan needs one outcome per gate, plus the fallback")
        self.gates = tuple(gates)
        self.outcomes = tuple(outcomes)
        self._n = len(gates)

    @cython.ccall
    def pick(self, probe: Probe, now: cython.double) -> cython.Py_ssize_t:
        """The index of the outcome for this device."""
        i: cython.Py_ssize_t
        gate: Gate
        for i in range(self._n):
            gate = self.gates[i]
            if gate.admits(probe, now):
                return i
        return self._n

    def choose(self, probe: Probe, now: float) -> Any:
        return self.outcomes[self.pick(probe, now)]


# -- request validation -----------------------------------------------------------------


_EMPTY_TAGS: frozenset[str] = frozenset()
_VERSIONS: dict[str, Version] = {}


@cython.ccall
def cached_version(text: str) -> Version:
    """``Version.parse``, memoised: a fleet reports few distinct binary and OS versions."""
    found = _VERSIONS.get(text)
    if found is None:
        found = Version.parse(text)  # raises InvalidVersion before anything is cached
        if len(_VERSIONS) >= 4096:
            _VERSIONS.clear()
        _VERSIONS[text] = found
    return found


@cython.cfunc
def _text(data: dict, name: str, max_len: cython.Py_ssize_t, required: cython.bint) -> object:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise ValidationError(f"field {name!r} is required")
        return None
    if type(value) is not str or len(value) > max_len:
        raise ValidationError(f"field {name!r} must be a string of at most {max_len} characters")
    return value


@cython.cfunc
def _version(data: dict, name: str) -> object:
    text = _text(data, name, 64, False)
    if text is None:
        return None
    try:
        return cached_version(text)
    except InvalidVersion:
        raise ValidationError(f"field {name!r} must be a version such as 5.2.1, not {text!r}") from None


@cython.cfunc
def _device(data: dict) -> Device:
    tags = data.get("tags")
    if not tags:
        tags = _EMPTY_TAGS
    elif type(tags) is not list or len(tags) > MAX_TAGS or not all(type(t) is str for t in tags):
        raise ValidationError(f"field 'tags' must be a list of at most {MAX_TAGS} strings")
    else:
        tags = frozenset(tags)
    os_name = _text(data, "os", 32, False) or _text(data, "platform", 32, False)
    region = _text(data, "region", 32, False)
    tier = _text(data, "tier", 64, False)
    d: Device = Device.__new__(Device)
    d.device_id = _text(data, "device_id", 128, True)
    d.user_id = _text(data, "user_id", 128, False)
    d.os = os_name.lower() if os_name is not None else None
    d.os_version = _version(data, "os_version")
    d.model = _text(data, "model", 128, False)
    d.region = region.lower() if region is not None else None
    d.app_version = _version(data, "app_version")
    d.tags = tags
    d.tier = tier.lower() if tier is not None else None
    return d


def _known_kind(kind: str) -> str:
    if kind not in _KINDS:
        raise ValidationError(f"package kind must be one of {', '.join(KINDS)}")
    return kind


def parse_installed(item: Any) -> tuple[str, str, str | None]:
    """One entry of ``packages``: (kind, package id, package hash or None)."""
    if type(item) is not dict:
        raise ValidationError("each entry of 'packages' must be an object with kind, id and hash")
    kind = _known_kind(_text(item, "kind", 16, True))
    return (kind, _text(item, "id", 128, True), _text(item, "hash", 64, False))


@cython.cfunc
def _packages(data: dict) -> list:
    raw = data.get("packages") or []
    if type(raw) is not list or len(raw) > MAX_PACKAGES:
        raise ValidationError(f"field 'packages' must be a list of at most {MAX_PACKAGES} objects")
    return raw


# -- the native answer -------------------------------------------------------------------


@cython.cclass
class Tally:
    """Checks counted for one release since the last flush (see UpdateIndex.flush_checks)."""

    release_id = cython.declare(cython.longlong, visibility="readonly")
    n = cython.declare(cython.longlong, visibility="public")

    def __init__(self, release_id: int) -> None:
        self.release_id = release_id
        self.n = 0

    def take(self) -> int:
        n = self.n
        self.n = 0
        return n


@cython.cclass
class NativePlan:
    """A :class:`Plan` with, per outcome, the package's answer object as JSON bytes.

    ``quiet[i]`` marks an outcome of action ``none``, which a discovering device that
    holds nothing is not told. ``tallies[i]`` counts checks of the outcome's release
    (None if it has none).
    """

    plan = cython.declare(Plan, visibility="readonly")
    raws = cython.declare(tuple, visibility="readonly")
    #: ``raws`` with a leading comma: what follows an earlier object in the answer.
    _craws: tuple
    digests = cython.declare(tuple, visibility="readonly")
    tallies = cython.declare(tuple, visibility="readonly")
    quiet = cython.declare(tuple, visibility="readonly")
    #: Not a lineage this channel knows: answered first, as ``"action": "none"``.
    unknown = cython.declare(cython.bint, visibility="readonly")

    def __init__(
        self,
        plan: Plan,
        raws: tuple[bytes, ...],
        digests: tuple[int, ...],
        tallies: tuple[Tally | None, ...],
        quiet: tuple[bool, ...],
        unknown: bool = False,
    ) -> None:
        n = len(plan.outcomes)
        if not len(raws) == len(digests) == len(tallies) == len(quiet) == n:
            raise ValueError("a native plan needs raws, digests, tallies and flags per outcome")
        self.plan = plan
        self.raws = tuple(raws)
        self._craws = tuple(b"," + raw for raw in raws)
        self.digests = tuple(digests)
        self.tallies = tuple(tallies)
        self.quiet = tuple(quiet)
        self.unknown = unknown


#: Builds the plan of one installed package: (kind, id, hash or None, device) → plan.
PlanBuilder = Callable[[str, str, "str | None", Device], NativePlan]


@cython.cclass
class _Slot:
    """One (kind, package id) for one binary: its plans by held hash, and a dedup stamp.

    The plan of the hash seen last is kept apart: most of a fleet holds the same
    release, and comparing a hash is cheaper than hashing it for a dict.
    """

    kind: str
    plans: dict
    #: Slots of the same package id under other kinds (rare).
    siblings: dict
    last_digest: object
    last_plan: object
    stamp: cython.ulonglong

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.plans = {}
        self.siblings = {}
        self.last_digest = self
        self.last_plan = None
        self.stamp = 0


@cython.cclass
class NativeTable:
    """What one channel index answers natively for one base URL: plans, memoised.

    Plans are kept per binary (os, app version), then per package id (and kind), then
    per held hash, so a check finds each package's plan with two string-keyed lookups.
    """

    prefix = cython.declare(bytes, visibility="readonly")
    prefix_digest = cython.declare(cython.ulonglong, visibility="readonly")
    build = cython.declare(object, visibility="readonly")
    #: Every lineage the channel serves, for devices that ask to discover packages.
    lineage_keys = cython.declare(tuple, visibility="readonly")
    _binaries: dict
    _shapes: object
    _size: cython.Py_ssize_t
    _requests: cython.ulonglong

    def __init__(
        self,
        prefix: bytes,
        prefix_digest: int,
        build: PlanBuilder,
        lineage_keys: tuple[tuple[str, str], ...],
    ) -> None:
        self.prefix = prefix
        self.prefix_digest = prefix_digest
        self.build = build
        self.lineage_keys = tuple(lineage_keys)
        self._binaries = {}
        self._shapes = _Shapes()
        self._size = 0
        self._requests = 0

    @property
    def size(self) -> int:
        """Plans held (the memo starts over past MAX_NATIVE_PLANS)."""
        return self._size

    @cython.cfunc
    def _pids(self, binary: tuple) -> dict:
        pids = self._binaries.get(binary)
        if pids is None:
            if self._size >= MAX_NATIVE_PLANS:
                self._binaries.clear()
                self._shapes = _Shapes()
                self._size = 0
            pids = self._binaries[binary] = {}
        return pids

    @cython.cfunc
    def _slot(self, pids: dict, kind: str, pid: str) -> _Slot:
        found = pids.get(pid)
        if found is None:
            found = pids[pid] = _Slot(_known_kind(kind))
        slot: _Slot = found
        if slot.kind == kind:
            return slot
        other = slot.siblings.get(kind)
        if other is None:
            other = slot.siblings[kind] = _Slot(_known_kind(kind))
        return other

    @cython.cfunc
    def _plan(self, slot: _Slot, pid: str, digest: object, device: Device) -> NativePlan:
        if digest == slot.last_digest:
            return cython.cast(NativePlan, slot.last_plan)
        found = slot.plans.get(digest)
        if found is None:
            found = self.build(slot.kind, pid, digest, device)
            slot.plans[digest] = found
            self._size += 1
        slot.last_digest = digest
        slot.last_plan = found
        return found


def native_answer(table: NativeTable, data: dict, now: float) -> tuple[bytes, str]:
    """The answer body of ``POST /client/v1/updates`` and its ETag; check tallies move.

    ``data`` is the parsed request object. This is the reference path: every entry is
    validated with its precise error, then per package come two memo lookups, the gates
    of its candidates (usually one or two), and cached bytes. Nothing is counted unless
    the whole request is valid. Polls usually take :func:`native_check` instead.
    """
    items: list = _packages(data)
    discover = data.get("discover", False)
    if type(discover) is not bool:
        raise ValidationError("field 'discover' must be a boolean")
    device: Device = _device(data)
    probe = Probe(device)
    pids: dict = table._pids((device.os, data.get("app_version") or None))
    table._requests += 1
    stamp: cython.ulonglong = table._requests
    answer = _Answer(table)
    nplan: NativePlan
    slot: _Slot
    i: cython.Py_ssize_t
    for item in items:
        kind, pid, digest = parse_installed(item)
        slot = table._slot(pids, kind, pid)
        if slot.stamp == stamp:
            continue  # the same package listed twice: the first entry answers
        slot.stamp = stamp
        nplan = table._plan(slot, pid, digest, device)
        i = nplan.plan.pick(probe, now)
        if discover and digest is None and nplan.quiet[i]:
            continue
        answer.add(nplan, i)
    if discover:
        for key in table.lineage_keys:
            kind, pid = key
            slot = table._slot(pids, kind, pid)
            if slot.stamp == stamp:
                continue
            nplan = table._plan(slot, pid, None, device)
            i = nplan.plan.pick(probe, now)
            if not nplan.quiet[i]:
                answer.add(nplan, i)
    return answer.finish()


# -- the native answer from raw bytes, with the packages list memoised -------------------
#
# A fleet sends few distinct ``packages`` lists: devices on the same releases send the
# same bytes. native_check() finds that list in the raw body (a small JSON scanner),
# parses only the rest, and keeps the validated list and, per binary, its plans under
# the list's bytes. Anything the scanner does not expect, and any error at all, sends
# the request down native_answer(), whose answers and errors are the reference.


def load_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, with the errors every JSON endpoint gives."""
    if not raw:
        raise BadRequest("request body is empty; a JSON object was expected", code="invalid_json")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if type(data) is not dict:
        raise ValidationError("request body must be a JSON object")
    return data


@cython.cfunc
@cython.inline
def _is_space(c: cython.uchar) -> cython.bint:
    return c == 32 or c == 10 or c == 13 or c == 9


@cython.cfunc
def _skip_space(buf: cython.p_uchar, i: cython.Py_ssize_t, n: cython.Py_ssize_t) -> cython.Py_ssize_t:
    while i < n and _is_space(buf[i]):
        i += 1
    return i


@cython.cfunc
def _next_quote(buf: cython.p_uchar, i: cython.Py_ssize_t, n: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """The index of the next ``"`` at or after ``i``, or -1 (memchr when compiled)."""
    if cython.compiled:
        found = cython.cast(cython.p_uchar, memchr(buf + i, 34, n - i))
        return -1 if found == cython.NULL else found - buf
    else:
        return buf.find(b'"', i, n)


@cython.cfunc
def _skip_string(buf: cython.p_uchar, i: cython.Py_ssize_t, n: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """``buf[i]`` is the opening quote; the index after the closing one, or -1.

    A quote closes the string unless an odd number of backslashes precede it.
    """
    q: cython.Py_ssize_t
    b: cython.Py_ssize_t
    i += 1
    while i < n:
        q = _next_quote(buf, i, n)
        if q < 0:
            return -1
        b = q
        while b > i and buf[b - 1] == 92:  # backslash
            b -= 1
        if (q - b) % 2 == 0:
            return q + 1
        i = q + 1
    return -1


@cython.cfunc
def _skip_value(buf: cython.p_uchar, i: cython.Py_ssize_t, n: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """The index after the JSON value starting at ``buf[i]``, or -1 (orjson judges validity)."""
    c: cython.uchar
    depth: cython.Py_ssize_t = 0
    if i >= n:
        return -1
    c = buf[i]
    if c == 34:
        return _skip_string(buf, i, n)
    if c != 91 and c != 123:  # a scalar: up to the next delimiter
        while i < n:
            c = buf[i]
            if c == 44 or c == 125 or c == 93 or _is_space(c):
                return i
            i += 1
        return -1
    while i < n:
        c = buf[i]
        if c == 34:
            i = _skip_string(buf, i, n)
            if i < 0:
                return -1
            continue
        if c == 91 or c == 123:  # [ {
            depth += 1
        elif c == 93 or c == 125:  # ] }
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1


_PACKAGES_KEY = b'"packages"'


@cython.ccall
def packages_span(data: bytes) -> tuple | None:
    """(start, end) of the top-level ``"packages"`` array in a JSON object, or None.

    None whenever the body is not the plain shape clients send: not an object, the key
    present twice or escaped, the value not an array, or anything the scanner cannot
    follow. The caller then parses the whole body.
    """
    found = _locate(data, None)
    return None if found is None else found[:2]


@cython.cfunc
def _locate(data: bytes, shapes: object) -> tuple | None:
    """:func:`packages_span`, plus the memoised list (of ``shapes``) the array is, if any.

    A list seen before is recognised by comparing bytes, so its array is not scanned: a
    JSON array ends where its own bytes say, so equal bytes mean the same extent.
    """
    n: cython.Py_ssize_t = len(data)
    buf: cython.p_uchar = data  # the bytes' own memory when compiled
    i: cython.Py_ssize_t = _skip_space(buf, 0, n)
    k: cython.Py_ssize_t
    start: cython.Py_ssize_t = -1
    end: cython.Py_ssize_t = -1
    is_packages: cython.bint
    known = None
    if i >= n or buf[i] != 123:
        return None
    i = _skip_space(buf, i + 1, n)
    if i < n and buf[i] == 125:
        return None
    while i < n:
        if buf[i] != 34:
            return None
        k = _skip_string(buf, i, n)
        if k < 0:
            return None
        is_packages = k - i == 10 and buf[i : i + 10] == _PACKAGES_KEY
        i = _skip_space(buf, k, n)
        if i >= n or buf[i] != 58:  # :
            return None
        i = _skip_space(buf, i + 1, n)
        if is_packages:
            if start >= 0 or buf[i] != 91:
                return None
            if shapes is not None:
                known = (cython.cast(_Shapes, shapes)).match(buf, i, n)
            k = i + len(cython.cast(_Shape, known).listing) if known is not None else _skip_value(buf, i, n)
            start, end = i, k
        else:
            k = _skip_value(buf, i, n)
        if k < 0:
            return None
        i = _skip_space(buf, k, n)
        if i >= n:
            return None
        if buf[i] == 44:  # ,
            i = _skip_space(buf, i + 1, n)
            continue
        if buf[i] == 125 and _skip_space(buf, i + 1, n) == n:
            return (start, end, known) if start >= 0 else None
        return None
    return None


@cython.cclass
class _Shape:
    """A validated ``packages`` list (first entry per kind and id), and its plans per binary."""

    listing: bytes
    installed: tuple
    by_binary: dict

    def __init__(self, listing: bytes, installed: tuple) -> None:
        self.listing = listing
        self.installed = installed
        self.by_binary = {}


#: Distinct list lengths remembered, and lists remembered per length.
MAX_LENGTHS = 32
MAX_PER_LENGTH = 16


@cython.cclass
class _Shapes:
    """The ``packages`` lists a table has seen, by byte length, newest first.

    A check compares its array with the remembered lists of each remembered length
    (a byte test, then memcmp) instead of scanning and hashing it.
    """

    lengths: list
    by_length: dict

    def __init__(self) -> None:
        self.lengths = []
        self.by_length = {}

    @cython.cfunc
    def match(self, buf: cython.p_uchar, i: cython.Py_ssize_t, n: cython.Py_ssize_t) -> object:
        length: cython.Py_ssize_t
        kept: cython.p_uchar
        shape: _Shape
        for value in self.lengths:
            length = value
            if i + length > n or buf[i + length - 1] != 93:  # ]
                continue
            for candidate in self.by_length[value]:
                shape = candidate
                if cython.compiled:
                    kept = shape.listing
                    if memcmp(buf + i, kept, length) == 0:
                        return shape
                elif buf[i : i + length] == shape.listing:
                    return shape
        return None

    @cython.cfunc
    def add(self, shape: _Shape) -> cython.void:
        length = len(shape.listing)
        same = self.by_length.get(length)
        if same is None:
            if len(self.lengths) >= MAX_LENGTHS:
                del self.by_length[self.lengths.pop()]
            self.lengths.insert(0, length)
            same = self.by_length[length] = []
        same.insert(0, shape)
        del same[MAX_PER_LENGTH:]


@cython.cfunc
def _shape(table: NativeTable, raw: bytes, start: cython.Py_ssize_t, end: cython.Py_ssize_t) -> _Shape:
    """The list ``raw[start:end]``, validated; remembered for the next checks that send it."""
    listing = raw[start:end]
    items = orjson.loads(listing)
    if type(items) is not list or len(items) > MAX_PACKAGES:
        raise ValidationError("not the usual packages list")  # the reference path says more
    seen = set()
    installed = []
    for item in items:
        kind, pid, digest = parse_installed(item)
        if (kind, pid) in seen:
            continue
        seen.add((kind, pid))
        installed.append((kind, pid, digest or None))
    shape = _Shape(listing, tuple(installed))
    cython.cast(_Shapes, table._shapes).add(shape)
    return shape


@cython.cfunc
def _shaped(
    table: NativeTable,
    data: dict,
    raw: bytes,
    start: cython.Py_ssize_t,
    end: cython.Py_ssize_t,
    known: object,
    now: cython.double,
) -> tuple:
    items: list = _packages(data)
    if items or data.get("discover", False) is not False:
        raise ValidationError("not the usual shape")  # discovering devices take the reference path
    device: Device = _device(data)
    binary = (device.os, data.get("app_version") or None)
    shape: _Shape = cython.cast(_Shape, known) if known is not None else _shape(table, raw, start, end)
    plans = shape.by_binary.get(binary)
    if plans is None:
        pids: dict = table._pids(binary)
        built = []
        for kind, pid, digest in shape.installed:
            built.append(table._plan(table._slot(pids, kind, pid), pid, digest, device))
        if len(shape.by_binary) >= 64:
            shape.by_binary.clear()
        plans = shape.by_binary[binary] = tuple(built)
    probe = Probe(device)
    answer = _Answer(table)
    nplan: NativePlan
    for p in plans:
        nplan = p
        answer.add(nplan, nplan.plan.pick(probe, now))
    return answer.finish()


@cython.cclass
class _Answer:
    """The answer being assembled: package objects in order, unknown ones first, and its ETag."""

    parts: list
    unknown: list
    tallies: list
    first: bytes
    h: cython.ulonglong
    hu: cython.ulonglong

    def __init__(self, table: NativeTable) -> None:
        self.parts = [table.prefix]
        self.unknown = []
        self.tallies = []
        self.first = b""
        self.h = table.prefix_digest
        self.hu = 0

    @cython.cfunc
    def add(self, nplan: NativePlan, i: cython.Py_ssize_t) -> cython.void:
        d: cython.ulonglong = nplan.digests[i]
        if nplan.unknown:
            self.unknown.append(nplan.raws[i])
            self.hu = _mix(self.hu, d)
            return
        if not self.first:
            self.first = nplan.raws[i]
        self.parts.append(nplan._craws[i])
        self.h = _mix(self.h, d)
        self.tallies.append(nplan.tallies[i])

    @cython.cfunc
    def finish(self) -> tuple:
        """Count the checks and join the bytes: only once the whole request is valid."""
        tally: Tally
        for t in self.tallies:
            if t is not None:
                tally = t
                tally.n += 1
        parts = self.parts
        h: cython.ulonglong = self.h
        if self.unknown:
            parts.insert(1, b",".join(self.unknown))  # the known objects that follow keep their commas
            h = _mix(h, self.hu)
        elif self.first:
            parts[1] = self.first
        parts.append(b"]}")
        return b"".join(parts), f'"{h:016x}"'


def native_check(table: NativeTable, raw: bytes, now: float) -> tuple[bytes, str]:
    """:func:`native_answer` for a raw request body, answering the same bytes and errors."""
    span = _locate(raw, table._shapes)
    if span is not None:
        start: cython.Py_ssize_t = span[0]
        end: cython.Py_ssize_t = span[1]
        try:
            data = orjson.loads(b"".join((raw[:start], b"[]", raw[end:])))
            if type(data) is dict:
                return _shaped(table, data, raw, start, end, span[2], now)
        except Exception:  # noqa: S110 - the reference path below answers, or names the error
            pass
    return native_answer(table, load_object(raw), now)


if cython.compiled:  # a stale extension (built from another source) hands over to this source
    from mpaas.packages.releases.kernel_build import use_current_source

    use_current_source(__name__, __file__, BUILT_FROM_SHA256)
