"""A signed call succeeds; replayed, stale, tampered, wrongly keyed and wrongly versioned
calls are refused with their result code, and the operation never runs for them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from gateway_support import ACTOR, Env, add_counter

from mpaas.banking.client import GatewayClient, signing_string

NOW = 1_800_000_000.0


def pin(env: Env, client: GatewayClient, now: float = NOW) -> None:
    env.gateway.clock = lambda: now
    client.clock = lambda: now


async def test_a_valid_signed_call_succeeds(env: Env) -> None:
    calls = add_counter(env)
    client = env.client()
    result = await client.call("com.test.count", {"note": "hi"})
    assert (result.status, result.code, result.result) == (200, 1000, {"n": 1, "note": "hi"})
    assert result.headers["X-Mgs-Result-Code"] == "1000"
    assert [(c.app, c.device, c.device_kid) for c in calls] == [("bank", client.device, None)]


async def test_a_replayed_nonce_is_refused_and_not_executed(env: Env) -> None:
    calls = add_counter(env)
    client = env.client()
    body = b'{"note":"once"}'
    headers = client.headers("com.test.count", 1, body)
    first = await client.send(body, headers)
    again = await client.send(body, headers)
    assert first.code == 1000
    assert (again.status, again.code, again.error["code"]) == (401, 4003, "request_expired")
    assert len(calls) == 1


@pytest.mark.parametrize("skew", [-301.0, 301.0])
async def test_a_timestamp_outside_the_window_is_refused(env: Env, skew: float) -> None:
    calls = add_counter(env)
    client = env.client()
    pin(env, client)
    body = b"{}"
    stale = await client.send(
        body, client.headers("com.test.count", 1, body, timestamp_ms=int((NOW + skew) * 1000))
    )
    assert (stale.status, stale.code) == (401, 4003)
    edge = await client.send(
        body, client.headers("com.test.count", 1, body, timestamp_ms=int((NOW - 299) * 1000))
    )
    assert edge.code == 1000
    assert len(calls) == 1


async def test_a_tampered_body_is_refused(env: Env) -> None:
    calls = add_counter(env)
    client = env.client()
    headers = client.headers("com.test.count", 1, b'{"note":"pay 1"}')
    result = await client.send(b'{"note":"pay 1000"}', headers)
    assert (result.status, result.code, result.error["code"]) == (401, 4002, "signature_invalid")
    assert calls == []


async def test_wrong_unknown_and_revoked_keys_are_refused(env: Env) -> None:
    calls = add_counter(env)
    wrong = env.client()
    wrong.app_secret = hashlib.sha256(b"not the secret").digest()
    unknown = env.client()
    unknown.app_kid = "k000000000000"
    other_app = env.client()
    other_app.app = "nope"
    for client in (wrong, unknown, other_app):
        result = await client.call("com.test.count")
        assert (result.status, result.code) == (401, 4002)
        assert result.error["message"] == "the request signature is invalid"  # the same for every cause
    await env.gateway.keys.revoke_app_key(ACTOR, "bank", env.kid)
    assert (await env.client().call("com.test.count")).code == 4002
    assert calls == []


async def test_a_wrong_operation_version_is_unknown(env: Env) -> None:
    calls = add_counter(env)
    client = env.client()
    result = await client.call("com.test.count", version=2)
    assert (result.status, result.code, result.error["code"]) == (404, 3000, "unknown_operation")
    assert (await client.call("com.test.nothing")).code == 3000
    assert calls == []


async def test_malformed_headers_and_bodies_are_invalid_parameters(env: Env) -> None:
    calls = add_counter(env)
    client = env.client()
    body = b"{}"
    headers = client.headers("com.test.count", 1, body)
    for name, value in [("X-Mgs-Nonce", "short"), ("X-Mgs-Timestamp", "17e11"), ("X-Mgs-Device-Id", "a\tb")]:
        result = await client.send(body, headers | {name: value})
        assert (result.status, result.code) == (400, 4001), name
    no_sig = {k: v for k, v in headers.items() if k != "X-Mgs-Signature"}
    assert (await client.send(body, no_sig)).code == 4002
    assert (await client.send(body, headers | {"X-Mgs-Signature": "alg=rsa;kid=x;sig=AA=="})).code == 4002
    deep = b'{"note":' + b"[" * 5000 + b"]" * 5000 + b"}"
    for bad in (
        b"[1]",
        b"{not json",
        deep,
        json.dumps({"note": 5}).encode(),
        json.dumps({"extra": 1}).encode(),
    ):
        result = await client.send(bad, client.headers("com.test.count", 1, bad))
        assert (result.status, result.code) == (400, 4001), bad
    assert result.error["detail"] == [{"field": "extra", "message": "Extra inputs are not permitted"}]
    assert calls == []


async def test_the_body_is_bounded_before_it_is_read(env: Env) -> None:
    add_counter(env)
    client = env.client()
    big = b'{"note":"' + b"x" * (env.settings.gateway_max_body_bytes + 1) + b'"}'
    result = await client.send(big, client.headers("com.test.count", 1, big))
    assert (result.status, result.code) == (400, 4001)
    assert "exceeds" in result.error["message"]


async def test_a_failing_operation_leaks_nothing(env: Env) -> None:
    async def broken(call: object, params: object) -> dict[str, object]:
        raise RuntimeError("SELECT secret FROM bank_users WHERE mpaas.banking.internal")

    add_counter(env, "com.test.broken", handler=broken)
    result = await env.client().call("com.test.broken")
    assert (result.status, result.code) == (500, 6666)
    text = json.dumps(result.error)
    for leak in ("SELECT", "secret", "mpaas.", "Traceback", "RuntimeError"):
        assert leak not in text
    assert result.headers["X-Request-Id"] in result.error["message"]


async def test_a_device_key_signs_after_registration_and_the_app_key_no_longer_does(env: Env) -> None:
    calls = add_counter(env)
    client = env.client()
    registered = await client.register_device_key()
    assert registered.ok and client.device_kid == registered.result["kid"]
    assert (await client.call("com.test.count")).code == 1000
    assert calls[-1].device_kid == client.device_kid
    hmac_only = env.client(device=client.device)
    assert (await hmac_only.call("com.test.count")).code == 4002
    again = await client.register_device_key()  # the device already has a key
    assert again.code == 4002
    await env.gateway.keys.revoke_device(ACTOR, "bank", client.device)
    blocked = await client.call("com.test.count")
    assert (blocked.status, blocked.code) == (403, 1001)
    assert len(calls) == 1


async def test_a_device_key_proof_must_come_from_the_key(env: Env) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    client = env.client()
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    nonce = "n" * 20
    proof = other.sign(
        f"MGS1-DEVICE-KEY\nbank\n{client.device}\n{nonce}".encode(),
        ec.ECDSA(__import__("cryptography.hazmat.primitives.hashes", fromlist=["SHA256"]).SHA256()),
    )
    body = json.dumps(
        {"public_key": base64.b64encode(der).decode(), "proof": base64.b64encode(proof).decode()}
    ).encode()
    result = await client.send(body, client.headers("mgs.device.register", 1, body, nonce=nonce))
    assert result.code == 4002
    assert await env.gateway.keys.device_key("bank", client.device) is None


async def test_the_client_signs_what_the_documentation_says(env: Env) -> None:
    client = env.client()
    pin(env, client)
    body = b'{"note":"doc"}'
    headers = client.headers("com.test.count", 1, body, nonce="N" * 16)
    message = signing_string("com.test.count", 1, "bank", client.device, "", int(NOW * 1000), "N" * 16, body)
    expected = base64.b64encode(hmac.new(env.secret, message, hashlib.sha256).digest()).decode()
    assert headers["X-Mgs-Signature"] == f"alg=hmac-sha256;kid={env.kid};sig={expected}"
