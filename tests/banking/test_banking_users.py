"""Users, one-time codes, sessions and the tier state machine, through the gateway."""

from __future__ import annotations

from gateway_support import (
    CARD,
    ID_NUMBER,
    OTHER_ID,
    PHONE,
    Env,
    add_counter,
    last_code,
    open_account,
    register,
)
from sqlmodel import select

from mpaas.banking.models import BankOneTimeCode


async def test_registration_by_phone_and_code(env: Env) -> None:
    client = env.client()
    assert (await client.call("mpaas.session.start")).result["tier"] == "visitor"
    visitor = client.session
    assert (await client.call("mpaas.otp.send", {"phone": PHONE})).ok
    code = last_code(env)
    login = await client.call("mpaas.user.login", {"phone": PHONE, "code": code})
    assert (login.result["tier"], login.result["registered"]) == ("registered", True)
    profile = await client.call("mpaas.user.profile")
    assert profile.result | {"created_at": None} == {
        "user_id": login.result["user_id"],
        "phone": "+86138****8000",
        "tier": "registered",
        "name": None,
        "card": None,
        "branch_verified": False,
        "created_at": None,
    }
    client.session = visitor  # the visitor session was replaced by the user's
    assert (await client.call("mpaas.user.profile")).code == 2000
    async with env.banking.sessions.db.session() as s:
        stored = (await s.exec(select(BankOneTimeCode))).all()
    assert len(stored) == 1 and code not in stored[0].code_hash and stored[0].consumed_at is not None

    again = env.client(device=client.device)  # a second login of the same number: the same user
    result = await register(env, again)
    assert (result["user_id"], result["registered"]) == (login.result["user_id"], False)


async def test_codes_allow_few_attempts_expire_and_belong_to_their_device(env: Env) -> None:
    client = env.client()
    await client.call("mpaas.session.start")
    await client.call("mpaas.otp.send", {"phone": PHONE})
    code = last_code(env)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        refused = await client.call("mpaas.user.login", {"phone": PHONE, "code": wrong})
        assert (refused.code, refused.error["code"]) == (1001, "one_time_code_rejected")
    assert (await client.call("mpaas.user.login", {"phone": PHONE, "code": code})).code == 1001  # used up

    await client.call("mpaas.otp.send", {"phone": PHONE})
    env.banking.clock.fixed = env.banking.clock() + 301  # five minutes and a second later
    assert (await client.call("mpaas.user.login", {"phone": PHONE, "code": last_code(env)})).code == 1001
    env.banking.clock.fixed = None

    await client.call("mpaas.otp.send", {"phone": PHONE})
    other = env.client()
    await other.call("mpaas.session.start")
    assert (await other.call("mpaas.user.login", {"phone": PHONE, "code": last_code(env)})).code == 1001


async def test_codes_are_rate_limited_per_number_and_per_device(env: Env) -> None:
    client = env.client()
    await client.call("mpaas.session.start")
    codes = [(await client.call("mpaas.otp.send", {"phone": PHONE})).code for _ in range(4)]
    assert codes[:3] == [1000, 1000, 1000] and codes[3] == 1002
    numbers = [f"+861390000{i:04d}" for i in range(10)]
    sent = [(await client.call("mpaas.otp.send", {"phone": n})).code for n in numbers]
    assert sent == [1000] * 7 + [1002] * 3  # 10 an hour per device, 3 already spent
    refused = await client.call("mpaas.otp.send", {"phone": "+8613911112222"})
    assert refused.error["code"] == "too_many_codes" and int(refused.headers["Retry-After"]) > 0
    assert len(env.banking.sms.outbox) == 10  # type: ignore[attr-defined]


async def test_the_tier_ladder_with_its_audit_trail(env: Env, admin: dict[str, str]) -> None:
    client = env.client()
    user_id = (await register(env, client))["user_id"]
    registered_token = client.session
    assert (await client.call("mpaas.tier.upgrade", {"target": "full"})).code == 3001  # below e_account

    opened = await open_account(client)
    assert (opened.code, opened.result["tier"]) == (1000, "e_account")
    assert client.session != registered_token
    stale = env.client(device=client.device, session=registered_token)
    assert (await stale.call("mpaas.user.profile")).code == 2000  # rotated away

    refused = await client.call("mpaas.tier.upgrade", {"target": "full"})
    assert (refused.code, refused.error["code"], refused.error["detail"]) == (
        1001,
        "tier_transition_refused",
        {"missing": ["branch"]},
    )
    url = f"/api/v1/apps/bank/bank-users/{user_id}"
    resp = await env.http.post(url + "/branch-verification", json={"note": "branch 12"}, headers=admin)
    assert resp.status == 200 and (await resp.json())["branch_verified"] is True
    upgraded = await client.call("mpaas.tier.upgrade", {"target": "full"})
    assert (upgraded.code, upgraded.result["tier"]) == (1000, "full")
    profile = (await client.call("mpaas.user.profile")).result
    assert (profile["tier"], profile["name"], profile["card"]) == (
        "full",
        "张*",
        {"last4": "2230", "bank": "Other Bank"},
    )

    shown = await (await env.http.get(url, headers=admin)).json()
    trail = [(e["from_tier"], e["to_tier"], e["reason"]) for e in shown["tier_history"]]
    assert trail == [
        ("visitor", "registered", "phone_verified"),
        ("registered", "e_account", "e_account_opened"),
        ("e_account", "full", "in_branch_verified"),
    ]
    assert shown["tier_history"][2]["evidence"]["branch_verified_by"].endswith(":t-admin")
    assert ID_NUMBER not in str(shown) and CARD not in str(shown)
    audit = await (await env.http.get("/api/v1/audit?action=banking.branch_verified", headers=admin)).json()
    assert audit["total"] == 1 and audit["items"][0]["detail"] == {"note": "branch 12"}


async def test_a_tier_restricted_operation_is_refused_below_its_tier(env: Env) -> None:
    calls = add_counter(env, "com.test.wealth", min_level=3, min_tier="full", session_required=True)
    client = env.client()
    assert (await client.call("com.test.wealth")).code == 2000  # no session at all
    await client.call("mpaas.session.start")
    assert (await client.call("com.test.wealth")).code == 3001  # visitor
    assert (await client.call("mpaas.user.profile")).code == 3001
    await register(env, client)
    refused = await client.call("com.test.wealth")
    assert (refused.status, refused.code, refused.error["message"]) == (
        403,
        3001,
        "this operation needs tier full",
    )
    assert calls == []


async def test_failed_checks_and_a_reused_identity_are_refused(env: Env) -> None:
    first, second = env.client(), env.client()
    await register(env, first)
    await register(env, second, "+8613900001111")
    bad_id = await open_account(first, id_number="110105194912310021")
    assert (bad_id.code, bad_id.error["code"]) == (1001, "verification_failed")
    declined = await open_account(first, card="4000000000000002")
    assert declined.error["code"] == "verification_failed"
    assert (await open_account(first)).ok
    reused = await open_account(second)
    assert (reused.code, reused.error["code"]) == (1001, "identity_in_use")
    assert (await open_account(second, id_number=OTHER_ID)).ok


async def test_sessions_are_bound_to_the_device_key_and_revocable(env: Env, admin: dict[str, str]) -> None:
    client = env.client()
    assert (await client.register_device_key()).ok
    result = await register(env, client)
    assert result["bound_to_device_key"] is True
    thief = env.client(session=client.session)  # another device with the stolen token
    assert (await thief.call("mpaas.user.profile")).code == 2000
    unsigned = await env.http.get(
        "/client/v1/catalog",
        headers={
            "X-Mpaas-Deployment-Key": await deployment_key(env, admin),
            "X-Mgs-Session": client.session or "",
            "X-Mgs-Device-Id": client.device,
        },
    )
    assert unsigned.status == 401  # an unsigned request cannot prove the key
    assert (await client.call("mpaas.user.profile")).ok
    resp = await env.http.post(
        f"/api/v1/apps/bank/bank-users/{result['user_id']}/revoke-sessions", headers=admin
    )
    assert resp.status == 200
    assert (await client.call("mpaas.user.profile")).code == 2000


async def deployment_key(env: Env, admin: dict[str, str]) -> str:
    channels = await (await env.http.get("/api/v1/apps/bank/channels", headers=admin)).json()
    return str(channels["items"][0]["deployment_key"])
