"""Rename detection for content-hashed file names.

Bundlers put a hash of the content into file names (``app.3f2a1c.js``,
``chunk-vendors.8d7e6f5a.css``, ``main-AB12CD34.js``, ``index-BfGk2x9Q.js``), so an
edited file shows up as a deletion plus an addition. Stripping the hash gives a
*rename key*; a new file whose key matches a removed file's key is diffed against
that file instead of being sent whole.

The rule, applied to the base name only (the directory must match exactly):

* Split the name on ``.``. Every segment after the first that is a *hash token* is
  dropped (``2.3f2a1c9b.chunk.js`` → ``2.chunk.js``, ``a.3f2a1c9b.js.map`` → ``a.js.map``).
* In the first segment, a trailing ``-<token>`` is dropped when the token is a hash
  token (``main-AB12CD34`` → ``main``). Vite's 8-character base64url hashes may
  themselves contain ``-`` or ``_``, so an 8-character tail after a ``-`` is tried
  first. A first segment that is a hash token as a whole becomes empty.
* A *hash token* is 6 to 64 characters and either
  - hex (either case) with at least one digit (``3f2a1c``; ``facade`` is a word), or
  - at least 8 characters of ``[A-Za-z0-9_]`` (base32 / base64url-ish) with a digit,
    or with both cases, or all upper case (``AB12CD34``, ``BfGkxQaZ``, ``QWERTYUI``),
    but not a lower-case word with an optional short number (``settings``,
    ``session117``), so such names keep their identity.

A wrong guess costs only bytes, never correctness: the predecessor is just the base
a delta is computed against, and every codec's result is compared with sending the
file whole.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from mpaas.packages.manifest import FileEntry

_HEX = re.compile(r"[0-9a-fA-F]{6,64}")
_BASE64ISH = re.compile(r"[A-Za-z0-9_]{8,64}")
_VITE_TAIL = re.compile(r"(?P<name>.+)-(?P<token>[A-Za-z0-9_-]{8})")
_DASH_TAIL = re.compile(r"(?P<name>.+)-(?P<token>[A-Za-z0-9_]{6,64})")
_WORD_NUMBER = re.compile(r"[A-Za-z]+[0-9]{0,4}")


def is_hash_token(token: str) -> bool:
    """True when ``token`` looks like a content hash rather than a word."""
    has_digit = any(c.isdigit() for c in token)
    if _HEX.fullmatch(token):
        return has_digit
    if not _BASE64ISH.fullmatch(token) or (_WORD_NUMBER.fullmatch(token) and token[0].islower()):
        return False
    has_lower = any(c.islower() for c in token)
    has_upper = any(c.isupper() for c in token)
    return has_digit or (has_lower and has_upper) or (has_upper and not has_lower)


def _strip_stem(stem: str) -> str:
    if is_hash_token(stem):
        return ""
    vite = _VITE_TAIL.fullmatch(stem)
    if vite and "-" in vite["token"] and is_hash_token(vite["token"].replace("-", "_")):
        return vite["name"]
    dash = _DASH_TAIL.fullmatch(stem)
    if dash and is_hash_token(dash["token"]):
        return dash["name"]
    return stem


def strip_content_hash(name: str) -> str:
    """A base name without its content hash: ``app.3f2a1c.js`` → ``app.js``."""
    stem, *rest = name.split(".")
    kept = [segment for segment in rest if not is_hash_token(segment)]
    return ".".join([_strip_stem(stem), *kept])


def rename_key(path: str) -> str:
    """``path`` with the content hash stripped from its base name."""
    directory, _, name = path.rpartition("/")
    stripped = strip_content_hash(name)
    return f"{directory}/{stripped}" if directory else stripped


def match_predecessors(removed: Iterable[FileEntry], added: Iterable[FileEntry]) -> dict[str, FileEntry]:
    """Map each added path whose rename key matches a removed file to that file.

    Among several removed files with the same key, the one closest in size wins
    (ties broken by path, so the result is deterministic). A removed file may be
    the predecessor of more than one added file; it is only read from.
    """
    by_key: dict[str, list[FileEntry]] = defaultdict(list)
    for entry in removed:
        by_key[rename_key(entry.path)].append(entry)
    found: dict[str, FileEntry] = {}
    for entry in added:
        candidates = by_key.get(rename_key(entry.path))
        if candidates:
            found[entry.path] = min(candidates, key=lambda c: (abs(c.size - entry.size), c.path))
    return found
