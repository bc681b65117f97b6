"""The signing string and the header parser: properties (hypothesis), and the test vectors
of docs/gateway.md checked against the reference client and the server."""

from __future__ import annotations

import base64
import dataclasses
import re
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from gateway_support import Env, add_counter
from hypothesis import given, settings
from hypothesis import strategies as st

from mpaas.banking.client import signing_string as client_signing_string
from mpaas.gateway.codes import GatewayError, markdown_table
from mpaas.gateway.signing import (
    ALGORITHMS,
    APP_RE,
    DEVICE_RE,
    KID_RE,
    NONCE_RE,
    OPERATION_RE,
    SESSION_RE,
    SignatureFormatError,
    SignatureHeader,
    _parse_request_slowly,
    load_device_key,
    parse_request,
    parse_signature,
    verify_ecdsa,
    verify_hmac,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"


def vector(name: str) -> str:
    m = re.search(rf"<!-- test-vector: {name} -->\n```text\n(.*?)\n```", DOC.read_text(), re.S)
    assert m is not None, name
    return m.group(1)


def fields(name: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in vector(name).splitlines())


def vector_headers() -> tuple[dict[str, str], bytes]:
    r = fields("request")
    return {
        "X-Mgs-Operation": r["operation"],
        "X-Mgs-Version": r["version"],
        "X-Mgs-App-Id": r["app"],
        "X-Mgs-Device-Id": r["device"],
        "X-Mgs-Session": r["session"],
        "X-Mgs-Timestamp": r["timestamp"],
        "X-Mgs-Nonce": r["nonce"],
    }, r["body"].encode()


def test_the_documented_signing_string_is_what_client_and_server_build() -> None:
    r = fields("request")
    expected = vector("signing-string").replace("\\n", "\n").encode()
    headers, body = vector_headers()
    server = parse_request("POST", "/gateway", headers | {"X-Mgs-Signature": fields("hmac")["header"]}, body)
    client = client_signing_string(
        r["operation"],
        int(r["version"]),
        r["app"],
        r["device"],
        r["session"],
        int(r["timestamp"]),
        r["nonce"],
        body,
    )
    assert server.body_sha256 == r["body_sha256"]
    assert server.signing_string() == client == expected
    assert f"({len(expected)} bytes)" in DOC.read_text()


def test_the_hmac_vector() -> None:
    h = fields("hmac")
    headers, body = vector_headers()
    req = parse_request("POST", "/gateway", headers | {"X-Mgs-Signature": h["header"]}, body)
    secret = base64.b64decode(h["secret_base64"])
    assert (req.signature.alg, req.signature.kid) == ("hmac-sha256", h["kid"])
    assert verify_hmac(secret, req.signing_string(), req.signature.sig)
    assert not verify_hmac(secret[:-1] + b"x", req.signing_string(), req.signature.sig)


def test_the_ecdsa_vector() -> None:
    e = fields("ecdsa")
    headers, body = vector_headers()
    req = parse_request("POST", "/gateway", headers | {"X-Mgs-Signature": e["header"]}, body)
    key = ec.derive_private_key(int(e["private_scalar_hex"], 16), ec.SECP256R1())
    spki = base64.b64decode(e["public_key_spki_base64"])
    public = load_device_key(spki)
    assert public.public_numbers() == key.public_key().public_numbers()
    assert __import__("hashlib").sha256(spki).hexdigest()[:32] == e["kid"] == req.signature.kid
    deterministic = key.sign(req.signing_string(), ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    assert deterministic == req.signature.sig
    assert verify_ecdsa(public, req.signing_string(), req.signature.sig)
    raw = int(e["r_hex"], 16).to_bytes(32, "big") + int(e["s_hex"], 16).to_bytes(32, "big")
    assert encode_dss_signature(int(e["r_hex"], 16), int(e["s_hex"], 16)) == req.signature.sig
    assert verify_ecdsa(public, req.signing_string(), raw)  # the raw r||s form is accepted too
    assert not verify_ecdsa(public, req.signing_string() + b"x", req.signature.sig)


async def test_the_ecdsa_vector_passes_the_live_gateway(env: Env) -> None:
    e, r = fields("ecdsa"), fields("request")
    calls = add_counter(env, "com.test.vector")
    counter = env.banking.registry.get("com.test.vector", 1)
    assert counter is not None  # the vector's operation may be a built-in: this one stands before it
    env.gateway.add_system(dataclasses.replace(counter, name=r["operation"]))
    await env.gateway.keys.register_device(
        r["app"], r["device"], base64.b64decode(e["public_key_spki_base64"])
    )
    env.gateway.clock = lambda: int(r["timestamp"]) / 1000
    headers, body = vector_headers()
    resp = await env.http.post("/gateway", data=body, headers=headers | {"X-Mgs-Signature": e["header"]})
    # signature, clock and nonce pass; the vector's made-up session is then refused
    assert (resp.status, resp.headers["X-Mgs-Result-Code"]) == (401, "2000")
    assert calls == []


def test_the_documented_result_codes_are_the_codes() -> None:
    m = re.search(r"<!-- result-codes begin -->\n(.*?)\n<!-- result-codes end -->", DOC.read_text(), re.S)
    assert m is not None and m.group(1) == markdown_table()


kids = st.from_regex(KID_RE, fullmatch=True)
signatures = st.builds(
    SignatureHeader, st.sampled_from(ALGORITHMS), kids, st.binary(min_size=1, max_size=120)
)


@given(signatures)
def test_a_formatted_signature_header_parses_back(header: SignatureHeader) -> None:
    assert parse_signature(header.format()) == header


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=300), signatures.map(lambda h: h.format()[:-2] + "?=")))
def test_any_text_parses_to_its_one_canonical_form_or_is_refused(text: str) -> None:
    try:
        parsed = parse_signature(text)
    except SignatureFormatError:
        return
    assert parsed.format() == text


header_value = st.one_of(st.text(max_size=80), st.from_regex(NONCE_RE, fullmatch=True))


gateway_headers = st.fixed_dictionaries(
    {},
    optional={
        "X-Mgs-Operation": st.one_of(st.from_regex(OPERATION_RE, fullmatch=True), st.text(max_size=40)),
        "X-Mgs-Version": st.one_of(st.integers(-5, 20000).map(str), st.text(max_size=6)),
        "X-Mgs-App-Id": st.one_of(st.from_regex(APP_RE, fullmatch=True), st.text(max_size=10)),
        "X-Mgs-Device-Id": st.one_of(st.from_regex(DEVICE_RE, fullmatch=True), header_value),
        "X-Mgs-Session": st.one_of(st.from_regex(SESSION_RE, fullmatch=True), header_value),
        "X-Mgs-Timestamp": st.one_of(st.integers(0, 10**14).map(str), st.text(max_size=14)),
        "X-Mgs-Nonce": header_value,
        "X-Mgs-Signature": st.one_of(signatures.map(lambda h: h.format()), st.text(max_size=60)),
    },
)


def outcome(parse: Any, headers: dict[str, str], body: bytes) -> object:
    try:
        return parse("POST", "/gateway", headers, body)
    except GatewayError as exc:
        return (exc.result, exc.code, exc.message)


@settings(max_examples=60)
@given(gateway_headers, st.binary(max_size=16))
def test_the_one_match_fast_path_parses_as_the_header_by_header_path(
    headers: dict[str, str], body: bytes
) -> None:
    assert outcome(parse_request, headers, body) == outcome(_parse_request_slowly, headers, body)


@settings(max_examples=200)
@given(gateway_headers, st.binary(max_size=64))
def test_the_header_parser_refuses_with_a_result_code_or_yields_clean_fields(
    headers: dict[str, str], body: bytes
) -> None:
    try:
        req = parse_request("POST", "/gateway", headers, body)
    except GatewayError as exc:
        assert int(exc.result) in (4001, 4002)
        return
    lines = req.signing_string().split(b"\n")
    assert len(lines) == 11  # no field can hold a line break and shift the others
    assert lines[3:8] == [
        x.encode() for x in (req.operation, str(req.version), req.app, req.device, req.session)
    ]
    assert 1 <= req.version <= 9999 and len(str(req.timestamp_ms)) == 13
