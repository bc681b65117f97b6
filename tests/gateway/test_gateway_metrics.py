"""Gateway metrics on ``/metrics``: calls per operation and result code, and a latency
histogram per operation; unknown operations never become labels."""

from __future__ import annotations

from typing import Any

from gateway_support import Env, add_counter, env_settings, start
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "metrics-s3cret"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("mpaas_gateway_"):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def calls(found: dict[Any, float], operation: str, code: int) -> float:
    return found.get(("mpaas_gateway_calls_total", (("code", str(code)), ("operation", operation))), 0.0)


async def test_calls_are_counted_per_operation_and_result_code(
    aiohttp_client: Any, make_settings: Any
) -> None:
    env: Env = await start(aiohttp_client, env_settings(make_settings, metrics_token=TOKEN))
    add_counter(env)
    client = env.client()
    body = b"{}"
    for _ in range(3):
        assert (await client.call("com.test.count")).code == 1000
    replayed = client.headers("com.test.count", 1, body)
    await client.send(body, replayed)
    assert (await client.send(body, replayed)).code == 4003
    assert (await client.send(b'{"note":"x"}', client.headers("com.test.count", 1, body))).code == 4002
    assert (await client.call("com.test.count", {"extra": 1})).code == 4001
    for name in ("com.test.nothing", "com.test.other", "com.attacker.made.up"):
        assert (await client.call(name)).code == 3000
    assert (await client.send(body, {"X-Mgs-Operation": "no"})).code == 4001

    assert (await env.http.get("/metrics")).status == 401  # the metrics token still guards them
    resp = await env.http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200
    found = samples(await resp.text())
    assert calls(found, "com.test.count", 1000) == 4
    assert calls(found, "com.test.count", 4003) == 1
    assert calls(found, "com.test.count", 4002) == 1
    assert calls(found, "com.test.count", 4001) == 1
    assert calls(found, "(unknown)", 3000) == 3
    assert calls(found, "(unknown)", 4001) == 1
    operations = {
        dict(labels)["operation"] for (name, labels) in found if name == "mpaas_gateway_calls_total"
    }
    assert operations == {"com.test.count", "(unknown)"}
    count = found[("mpaas_gateway_call_seconds_count", (("operation", "com.test.count"),))]
    inf = found[("mpaas_gateway_call_seconds_bucket", (("le", "+Inf"), ("operation", "com.test.count")))]
    assert count == inf == 7
    assert found[("mpaas_gateway_call_seconds_sum", (("operation", "com.test.count"),))] > 0
