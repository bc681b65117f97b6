"""Seeded generator of realistic H5 (web) packages and of their next versions.

A package looks like a webpack / Vite build: ``index.html``, content-hashed JS and
CSS under ``static/`` (a large vendor chunk, an app entry, many route chunks),
source maps, images and fonts (incompressible bytes), SVG icons and JSON (config,
i18n). About 40 % of the bytes are images and fonts, as in real offline packages.

:func:`next_version` makes the following release the way a bundler does: editing a
chunk changes its content hash and therefore its file name (a rename), ``index.html``
changes because it names the new hashes, a few assets are replaced, one file is
added, one deleted and one moved. By default about 3 % of the files change.

Everything is a pure function of the seed, so the benchmark is reproducible.
"""

from __future__ import annotations

import hashlib
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

_WORDS = [
    "function",
    "return",
    "const",
    "let",
    "var",
    "if",
    "else",
    "for",
    "while",
    "new",
    "this",
    "null",
    "undefined",
    "true",
    "false",
    "typeof",
    "instanceof",
    "switch",
    "case",
    "break",
    "default",
    "try",
    "catch",
    "finally",
    "throw",
    "async",
    "await",
    "import",
    "export",
    "class",
    "extends",
    "super",
    "static",
    "get",
    "set",
    "of",
    "in",
    "delete",
    "void",
    "yield",
]
_IDENTS = [
    "state",
    "props",
    "render",
    "component",
    "store",
    "dispatch",
    "commit",
    "payload",
    "router",
    "route",
    "params",
    "query",
    "user",
    "account",
    "balance",
    "amount",
    "currency",
    "transfer",
    "limit",
    "token",
    "session",
    "device",
    "locale",
    "message",
    "title",
    "label",
    "value",
    "items",
    "index",
    "length",
    "push",
    "map",
    "filter",
    "reduce",
    "then",
    "resolve",
    "reject",
    "promise",
    "request",
    "response",
    "headers",
    "status",
    "data",
    "error",
    "loading",
    "visible",
    "modal",
    "toast",
    "button",
    "input",
    "form",
    "list",
    "card",
    "header",
    "footer",
    "layout",
    "theme",
    "color",
    "size",
    "width",
    "height",
    "style",
    "className",
    "onClick",
]
_CSS_PROPS = [
    "display",
    "position",
    "top",
    "left",
    "right",
    "bottom",
    "margin",
    "padding",
    "width",
    "height",
    "color",
    "background",
    "border",
    "border-radius",
    "font-size",
    "font-weight",
    "line-height",
    "flex",
    "align-items",
    "justify-content",
    "overflow",
    "opacity",
    "transform",
    "transition",
    "z-index",
    "box-shadow",
]
_I18N_WORDS = [
    "account",
    "balance",
    "transfer",
    "confirm",
    "cancel",
    "amount",
    "recipient",
    "history",
    "settings",
    "security",
    "password",
    "login",
    "logout",
    "welcome",
    "notification",
    "payment",
    "card",
    "limit",
    "daily",
    "monthly",
    "success",
    "failed",
    "retry",
    "network",
    "error",
    "please",
    "enter",
    "valid",
    "number",
    "today",
    "yesterday",
    "details",
]


def _content_hash(data: bytes, n: int = 8) -> str:
    return hashlib.sha256(data).hexdigest()[:n]


def _js(rng: random.Random, size: int) -> bytes:
    """Minified-looking JavaScript of about ``size`` bytes."""
    parts: list[str] = []
    total = 0
    while total < size:
        name = rng.choice(_IDENTS) + rng.choice(_IDENTS).capitalize()
        args = ",".join(rng.choice("abcdefghijklmn") for _ in range(rng.randint(0, 3)))
        body = []
        for _ in range(rng.randint(2, 8)):
            kw = rng.choice(_WORDS)
            a, b = rng.choice(_IDENTS), rng.choice(_IDENTS)
            lit = rng.choice([str(rng.randint(0, 9999)), f'"{rng.choice(_I18N_WORDS)}"', "!0", "!1"])
            body.append(f"{kw} {a}.{b}={lit}")
        chunk = f"function {name}({args}){{{';'.join(body)}}}"
        if rng.random() < 0.3:
            chunk = (
                f'e.exports.{name}={name};var t{rng.randint(0, 999)}=n("{_content_hash(chunk.encode(), 6)}");'
            )
            chunk += f"function {name}$({args}){{{';'.join(body)}}}"
        parts.append(chunk)
        total += len(chunk) + 1
    return ";".join(parts).encode()[:size]


def _css(rng: random.Random, size: int) -> bytes:
    parts: list[str] = []
    total = 0
    while total < size:
        sel = f".{rng.choice(_IDENTS)}-{rng.choice(_IDENTS)}"
        decls = ";".join(f"{rng.choice(_CSS_PROPS)}:{rng.randint(0, 64)}px" for _ in range(rng.randint(2, 7)))
        rule = f"{sel}{{{decls}}}"
        parts.append(rule)
        total += len(rule)
    return "".join(parts).encode()[:size]


def _json(rng: random.Random, entries: int) -> bytes:
    items = [
        f'"{rng.choice(_IDENTS)}.{rng.choice(_IDENTS)}.{i}":"'
        + " ".join(rng.choice(_I18N_WORDS) for _ in range(rng.randint(1, 8)))
        + '"'
        for i in range(entries)
    ]
    return ("{" + ",".join(items) + "}").encode()


def _svg(rng: random.Random) -> bytes:
    path = " ".join(f"L{rng.randint(0, 24)} {rng.randint(0, 24)}" for _ in range(rng.randint(10, 60)))
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">'
        f'<path d="M0 0 {path}Z" fill="currentColor"/></svg>'
    ).encode()


def _binary(rng: random.Random, size: int, magic: bytes) -> bytes:
    """Already-compressed media: a format header then random bytes."""
    return magic + rng.randbytes(max(0, size - len(magic)))


_PNG = b"\x89PNG\r\n\x1a\n"
_JPG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
_WOFF2 = b"wOF2\x00\x01\x00\x00"


@dataclass(frozen=True)
class Package:
    """A generated package: relative path -> bytes."""

    files: dict[str, bytes]

    @property
    def total_size(self) -> int:
        return sum(len(b) for b in self.files.values())

    def write(self, root: Path) -> None:
        if root.exists():
            shutil.rmtree(root)
        for rel, data in self.files.items():
            dst = root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)


def _hashed(dirname: str, stem: str, ext: str, data: bytes) -> str:
    return f"{dirname}/{stem}.{_content_hash(data)}.{ext}"


def _index_html(files: dict[str, bytes]) -> bytes:
    refs = sorted(p for p in files if p.startswith("static/") and p.endswith((".js", ".css")))
    tags = "".join(
        f'<script src="{p}"></script>' if p.endswith(".js") else f'<link rel="stylesheet" href="{p}">'
        for p in refs
    )
    return f"<!doctype html><html><head><meta charset=utf-8>{tags}</head><body><div id=app></div></body></html>".encode()


def generate(seed: int = 1, target_size: int = 5 << 20, files: int = 500) -> Package:
    """A package of about ``target_size`` bytes and ``files`` files."""
    rng = random.Random(seed)
    scale = target_size / (5 << 20)
    out: dict[str, bytes] = {}
    n_chunks = int(files * 0.37)
    n_css = int(files * 0.06)
    n_img = int(files * 0.30)
    n_svg = int(files * 0.12)
    n_json = int(files * 0.08)
    n_fonts = 4
    # Bytes budget (of 5 MiB): vendor 0.45 MiB, app 0.2, chunks 1.7, css 0.35, images 1.8, fonts 0.3, json 0.2.
    mib = 1 << 20
    vendor = _js(rng, int(0.45 * mib * scale))
    out[_hashed("static/js", "chunk-vendors", "js", vendor)] = vendor
    app = _js(rng, int(0.2 * mib * scale))
    out[_hashed("static/js", "app", "js", app)] = app
    for i in range(n_chunks):
        data = _js(rng, max(200, int(rng.expovariate(1 / (1.7 * mib * scale / n_chunks)))))
        kind = rng.choice(["chunk", "page", "component"])
        if kind == "chunk":
            out[f"static/js/{i}.{_content_hash(data)}.chunk.js"] = data
        else:
            out[_hashed("static/js", f"{kind}-{rng.choice(_IDENTS).lower()}{i}", "js", data)] = data
        if rng.random() < 0.15:
            sm = _json(rng, max(4, len(data) // 200))
            out[f"static/js/{i}.{_content_hash(data)}.chunk.js.map"] = sm
    for i in range(n_css):
        data = _css(rng, max(300, int(rng.expovariate(1 / (0.35 * mib * scale / n_css)))))
        out[_hashed("static/css", f"{rng.choice(_IDENTS).lower()}{i}", "css", data)] = data
    for i in range(n_img):
        size = max(500, int(rng.expovariate(1 / (1.8 * mib * scale / n_img))))
        if rng.random() < 0.6:
            data = _binary(rng, size, _PNG)
            out[f"static/img/{rng.choice(_IDENTS).lower()}-{i}.png"] = data
        else:
            data = _binary(rng, size, _JPG)
            out[_hashed("static/img", f"banner{i}", "jpg", data)] = data
    for i in range(n_fonts):
        data = _binary(rng, int(0.3 * mib * scale / n_fonts), _WOFF2)
        out[_hashed("static/fonts", f"iconfont{i}", "woff2", data)] = data
    for i in range(n_svg):
        out[f"static/icons/{rng.choice(_IDENTS).lower()}-{i}.svg"] = _svg(rng)
    for i in range(n_json):
        out[f"data/{rng.choice(['i18n', 'config', 'mock'])}-{i}.json"] = _json(
            rng, max(5, int(rng.expovariate(1 / (0.2 * mib * scale / n_json / 40))))
        )
    out["manifest.json"] = b'{"name":"h5","version":"1.0.0","offline":true}'
    out["index.html"] = _index_html(out)
    return Package(out)


def _edit_js(rng: random.Random, data: bytes) -> bytes:
    """A small source change: a few token edits and one inserted function."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randrange(len(buf)) if buf else 0
        buf[pos:pos] = _js(rng, rng.randint(20, 400))
    if len(buf) > 100:
        cut = rng.randrange(len(buf) - 50)
        del buf[cut : cut + rng.randint(1, 50)]
    return bytes(buf)


def next_version(pkg: Package, seed: int = 2, change_ratio: float = 0.03) -> Package:
    """The next release: about ``change_ratio`` of the files change, as a bundler would."""
    rng = random.Random(seed)
    files = dict(pkg.files)
    budget = max(6, round(len(files) * change_ratio))
    js = sorted(p for p in files if p.endswith(".js") and p.startswith("static/js/"))
    css = sorted(p for p in files if p.endswith(".css"))
    pngs = sorted(p for p in files if p.endswith(".png"))
    jsons = sorted(p for p in files if p.startswith("data/"))
    svgs = sorted(p for p in files if p.endswith(".svg"))

    def rehash(path: str, data: bytes) -> str:
        """The bundler's new name for an edited hashed file."""
        old_hash = path.rsplit("/", 1)[1].split(".")[1]
        return path.replace(old_hash, _content_hash(data))

    # Always: the app entry changes (renamed by hash), so does index.html.
    n_js = max(1, budget // 2)
    edited = [p for p in js if "/app." in p] + rng.sample([p for p in js if "/app." not in p], n_js - 1)
    for path in edited:
        new = _edit_js(rng, files.pop(path))
        files[rehash(path, new)] = new
    for path in rng.sample(css, 1):
        new = files.pop(path) + _css(rng, 200)
        files[rehash(path, new)] = new
    for path in rng.sample(pngs, 1):  # a replaced picture keeps its name
        files[path] = _binary(rng, len(files[path]), _PNG)
    for path in rng.sample(jsons, max(1, budget // 8)):  # i18n strings edited in place
        files[path] = files[path].replace(b"account", b"wallet", 3)[:-1] + b',"new.key":"hello"}'
    files["static/img/promo-new.png"] = _binary(rng, 30_000, _PNG)  # an added file
    del files[rng.choice(svgs)]  # a deleted file
    moved = rng.choice([p for p in svgs if p in files])  # a pure move
    files["static/icons/v2/" + moved.rsplit("/", 1)[1]] = files.pop(moved)
    files["index.html"] = _index_html(files)
    return Package(files)
