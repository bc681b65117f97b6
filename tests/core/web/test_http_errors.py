"""The HTTP error contract: status codes and the {"error": {"code", "message"}} shape."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import web

from mpaas.app import create_app
from mpaas.appkeys import EDGE
from mpaas.identity.guard import require_roles
from mpaas.settings import Settings
from mpaas.web.api import Api
from tests_support import assert_error


async def test_unknown_route_is_404_json(client: Any) -> None:
    resp = await client.get("/no/such/thing")
    assert resp.status == 404
    assert_error(await resp.json(), "not_found")


async def test_wrong_method_is_405_with_allow(client: Any) -> None:
    resp = await client.delete("/healthz")
    assert resp.status == 405
    assert "GET" in resp.headers["Allow"]
    assert_error(await resp.json(), "method_not_allowed")


async def test_missing_token_is_401(client: Any) -> None:
    resp = await client.get("/api/v1/apps")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(await resp.json(), "missing_token")


async def test_bad_token_is_401(client: Any) -> None:
    resp = await client.get("/api/v1/apps", headers={"Authorization": "Bearer mpaas_nope"})
    assert resp.status == 401
    assert_error(await resp.json(), "invalid_token")
    resp = await client.get("/api/v1/apps", headers={"Authorization": "Basic abc"})
    assert resp.status == 401


async def test_wrong_role_is_403(client: Any, token_factory: Any) -> None:
    analyst = await token_factory("analyst")
    resp = await client.post(
        "/api/v1/apps",
        json={"name": "x", "platforms": ["ios"]},
        headers={"Authorization": f"Bearer {analyst}"},
    )
    assert resp.status == 403
    assert_error(await resp.json(), "forbidden")


async def test_invalid_json_is_400(client: Any, admin_headers: dict[str, str]) -> None:
    resp = await client.post("/api/v1/apps", data=b"{not json", headers=admin_headers)
    assert resp.status == 400
    assert_error(await resp.json(), "invalid_json")
    resp = await client.post("/api/v1/apps", data=b"[1,2]", headers=admin_headers)
    assert resp.status == 400
    assert_error(await resp.json(), "validation_error")


async def test_body_too_large_is_413(aiohttp_client: Any, make_settings: Any) -> None:
    settings: Settings = make_settings(max_body_bytes=2048)
    client = await aiohttp_client(create_app(settings))
    resp = await client.post("/api/v1/apps", data=b"x" * 5000)
    assert resp.status == 413
    assert_error(await resp.json(), "payload_too_large")


async def test_body_too_large_without_length_is_413(aiohttp_client: Any, make_settings: Any) -> None:
    """A chunked body carries no Content-Length; aiohttp's own limit must still answer in JSON."""
    settings: Settings = make_settings(max_body_bytes=2048)
    client = await aiohttp_client(create_app(settings))
    from mpaas.appkeys import DB
    from mpaas.identity.audit import Actor
    from mpaas.identity.tokens import create_token

    _row, token = await create_token(client.app[DB], Actor("t"), name="a", role="admin")

    async def body() -> Any:
        for _ in range(10):
            yield b"y" * 1000

    resp = await client.post("/api/v1/apps", data=body(), headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 413
    assert_error(await resp.json(), "payload_too_large")


async def test_unexpected_error_is_500_without_traceback(aiohttp_client: Any, settings: Settings) -> None:
    app = create_app(settings)

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals at /etc/passwd")

    extra = Api()
    extra.route("GET", "/boom", summary="fails", tag="test", auth="public")(boom)
    extra.register(app, app[EDGE], require_roles)
    client = await aiohttp_client(app)
    resp = await client.get("/boom")
    assert resp.status == 500
    body = await resp.json()
    assert_error(body, "internal_error")
    text = str(body)
    assert "Traceback" not in text and "secret internals" not in text
    assert resp.headers["X-Request-Id"] in body["error"]["message"]


async def test_request_id_is_echoed(client: Any) -> None:
    resp = await client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert resp.headers["X-Request-Id"] == "abc-123"
    resp = await client.get("/healthz", headers={"X-Request-Id": "bad id with spaces"})
    assert resp.headers["X-Request-Id"] != "bad id with spaces"


async def test_healthz_and_metrics(client: Any) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert (await resp.json())["checks"] == {"database": "ok", "blobs": "ok"}
    resp = await client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    assert "mpaas_http_requests_total" in text
    assert 'route="/healthz"' in text
    # Counted per route and status, with a latency histogram, collected at scrape time.
    assert 'mpaas_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert 'mpaas_http_request_seconds_count{method="GET",route="/healthz"} 1.0' in text
    assert 'mpaas_http_request_seconds_bucket{le="+Inf",method="GET",route="/healthz"} 1.0' in text


async def test_unknown_paths_are_counted_as_unmatched(client: Any) -> None:
    await client.get("/no/such/path")
    text = await (await client.get("/metrics")).text()
    assert 'mpaas_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text


async def test_metrics_token(aiohttp_client: Any, make_settings: Any) -> None:
    client = await aiohttp_client(create_app(make_settings(metrics_token="s3cret")))
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/metrics", headers={"Authorization": "Bearer s3cret"})).status == 200


async def test_healthz_reports_broken_blob_store(
    aiohttp_client: Any, make_settings: Any, tmp_path: Any
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the blob directory should be")
    client = await aiohttp_client(create_app(make_settings(blob_url=blocker.as_uri())))
    resp = await client.get("/healthz")
    assert resp.status == 503
    assert (await resp.json())["checks"]["blobs"].startswith("error")


async def test_access_log_names_route_status_and_id_but_not_the_query(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Every request is logged, unknown paths too (regression); query strings carry keys."""
    caplog.set_level(logging.INFO, logger="mpaas.access")
    await client.get("/healthz?deployment_key=secret")
    resp = await client.get("/no/such/thing?deployment_key=secret")
    records = [r for r in caplog.records if r.name == "mpaas.access"]
    assert [(r.route, r.status, r.path) for r in records] == [  # type: ignore[attr-defined]
        ("/healthz", 200, "/healthz"),
        ("unmatched", 404, "/no/such/thing"),
    ]
    assert records[1].request_id == resp.headers["X-Request-Id"]  # type: ignore[attr-defined]
    assert all("secret" not in r.getMessage() + str(r.__dict__) for r in records)
