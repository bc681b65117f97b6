"""FCM HTTP v1 through pyfcm 2.1, one HTTP attempt per send, off the event loop.

pyfcm is synchronous and, left alone, it sleeps for Retry-After and retries recursively
without limit (an HTTP-date Retry-After raises ValueError), and its urllib3 adapter
retries 502/503 with backoff until ``RetryError``. :class:`OneShotFCM` overrides
``requests_session`` and ``send_request`` so that a send is exactly one POST; the
delivery queue owns backoff, using ``SendResult.retry_after``.

Each worker thread gets its own :class:`OneShotFCM` (and so its own requests session);
they share one google-auth credentials object, refreshed under a lock (neither pyfcm's
lazy credential set-up nor google-auth's refresh is thread-safe), so the provider
holds one access token, not one per thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import requests
from google.oauth2 import service_account
from pyfcm import FCMNotification
from requests.adapters import HTTPAdapter

from mpaas.errors import ConfigError
from mpaas.push.providers.base import (
    Notification,
    Outcome,
    SendResult,
    parse_retry_after,
    send_bounded,
)

log = logging.getLogger(__name__)

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
DEFAULT_ENDPOINT_BASE = "https://fcm.googleapis.com/v1/projects"


class OneShotFCM(FCMNotification):
    """pyfcm's client without its retry loops; one instance per thread."""

    def __init__(
        self,
        *,
        credentials: service_account.Credentials,
        auth_lock: threading.Lock,
        project_id: str | None,
        endpoint_base: str,
    ) -> None:
        super().__init__(credentials=credentials, project_id=project_id)
        self._auth_lock = auth_lock
        self._bearer: str | None = None
        # An instance attribute: pyfcm builds the URL from self.FCM_END_POINT_BASE.
        self.FCM_END_POINT_BASE = endpoint_base.rstrip("/")
        self._session: requests.Session | None = None
        self._auth_request: google.auth.transport.requests.Request | None = None

    @property
    def requests_session(self) -> requests.Session:
        """A session with no urllib3 retries, whose bearer token follows the credentials' expiry.

        pyfcm re-fetches a token every 30 minutes regardless of its real lifetime; we
        refresh when google-auth says the token is (about to be) expired.
        """
        if self._session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["Content-Type"] = "application/json"
            self._session = session
            self._auth_request = google.auth.transport.requests.Request(session=requests.Session())
        credentials = self.credentials
        with self._auth_lock:
            if not credentials.valid:
                credentials.refresh(self._auth_request)
            token = credentials.token
        if token != self._bearer:
            self._session.headers["Authorization"] = f"Bearer {token}"
            self._bearer = token
        return self._session

    def send_request(self, payload: bytes | None = None, timeout: Any = None) -> requests.Response:
        """Exactly one POST: no sleeping on Retry-After, no recursion, no redirects."""
        return self.requests_session.post(
            self.fcm_end_point, data=payload, timeout=timeout, allow_redirects=False
        )

    def invalidate_token(self) -> None:
        """Drop the access token a 401 answered, so the next send fetches a new one.

        Only if no other thread has replaced it meanwhile (one refresh per bad token).
        """
        with self._auth_lock:
            if self.credentials.token == self._bearer:
                self.credentials.token = None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
        if self._auth_request is not None:
            self._auth_request.session.close()


def _error_fields(body: bytes) -> tuple[str | None, str | None, str, list[str]]:
    """(FCM errorCode, google.rpc status, message, violated fields) from an error body."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None, None, "", []
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return None, None, "", []
    error_code: str | None = None
    fields: list[str] = []
    details = error.get("details")
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict):
            continue
        if isinstance(detail.get("errorCode"), str) and error_code is None:
            error_code = detail["errorCode"]
        violations = detail.get("fieldViolations")
        for violation in violations if isinstance(violations, list) else []:
            if isinstance(violation, dict) and isinstance(violation.get("field"), str):
                fields.append(violation["field"])
    raw_status, raw_message = error.get("status"), error.get("message")
    status = raw_status if isinstance(raw_status, str) else None
    message = raw_message if isinstance(raw_message, str) else ""
    return error_code, status, message, fields


def classify_response(status: int, body: bytes, retry_after: str | None, now: datetime) -> SendResult:
    """Map an FCM v1 answer to what the delivery queue should do.

    INVALID_ARGUMENT is a bad message unless it names the token: FCM answers a
    malformed registration token with a ``message.token`` field violation (and the
    message "...not a valid FCM registration token"), which we treat as a dead token.
    SENDER_ID_MISMATCH (403) is REJECTED, not INVALID_TOKEN: it also happens when our
    own project is misconfigured, and must not wipe every token.
    """
    if status == 200:
        name: str | None = None
        try:
            parsed = json.loads(body)
            if isinstance(parsed, dict) and isinstance(parsed.get("name"), str):
                name = parsed["name"]
        except ValueError:
            pass
        return SendResult(outcome=Outcome.SENT, status=status, provider_id=name)
    error_code, rpc_status, message, fields = _error_fields(body)
    reason = error_code or rpc_status
    if error_code == "UNREGISTERED":
        return SendResult(outcome=Outcome.INVALID_TOKEN, status=status, reason=reason)
    if status == 400:
        names_token = "message.token" in fields or "registration token" in message.lower()
        outcome = Outcome.INVALID_TOKEN if names_token else Outcome.REJECTED
        return SendResult(outcome=outcome, status=status, reason=reason)
    if status in (401, 429) or status >= 500:
        return SendResult(
            outcome=Outcome.RETRY,
            status=status,
            reason=reason,
            retry_after=parse_retry_after(retry_after, now),
        )
    return SendResult(outcome=Outcome.REJECTED, status=status, reason=reason)


def build_message_options(n: Notification, now: float) -> dict[str, Any]:
    """pyfcm ``parse_payload`` keyword arguments for one notification."""
    high = n.priority == "high"
    android: dict[str, Any] = {"priority": "HIGH" if high else "NORMAL"}
    if n.ttl_seconds is not None:
        android["ttl"] = f"{max(n.ttl_seconds, 0)}s"
    if n.collapse_id is not None:
        android["collapse_key"] = n.collapse_id
    if n.sound is not None and (n.title is not None or n.body is not None):
        android["notification"] = {"sound": n.sound}
    background = n.push_type == "background"
    apns_headers = {"apns-priority": "10" if high and not background else "5", "apns-push-type": n.push_type}
    if n.collapse_id is not None:
        apns_headers["apns-collapse-id"] = n.collapse_id
    if n.ttl_seconds is not None:
        apns_headers["apns-expiration"] = "0" if n.ttl_seconds <= 0 else str(int(now) + n.ttl_seconds)
    aps: dict[str, Any] = {}
    if n.badge is not None:
        aps["badge"] = n.badge
    if n.sound is not None:
        aps["sound"] = n.sound
    if background:
        aps["content-available"] = 1
    apns: dict[str, Any] = {"headers": apns_headers}
    if aps:
        apns["payload"] = {"aps": aps}
    return {
        "fcm_token": n.token,
        "notification_title": n.title,
        "notification_body": n.body,
        "data_payload": dict(n.data) or None,
        "android_config": android,
        "apns_config": apns,
    }


class FcmProvider:
    """FCM HTTP v1 through pyfcm in a bounded thread pool (``concurrency`` threads)."""

    name = "fcm"

    def __init__(
        self,
        *,
        service_account_file: str | Path,
        project_id: str | None = None,
        endpoint_base: str = DEFAULT_ENDPOINT_BASE,
        concurrency: int = 16,
        request_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``project_id`` is used only if the service-account JSON has none (pyfcm's rule)."""
        if concurrency < 1 or request_timeout <= 0:
            raise ConfigError("FCM concurrency and request_timeout must be positive")
        try:
            info = json.loads(Path(service_account_file).read_text(encoding="utf-8"))
            credentials = service_account.Credentials.from_service_account_info(info, scopes=[FCM_SCOPE])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"unusable FCM service-account file {service_account_file}: {exc}") from exc
        if not (info.get("project_id") or project_id):
            raise ConfigError("FCM needs a project id (in the service-account JSON or given)")
        self._project_id = project_id
        self._endpoint_base = endpoint_base
        self._concurrency = concurrency
        self._timeout = (min(5.0, request_timeout), request_timeout)
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="mpaas-fcm")
        self._slots = asyncio.Semaphore(concurrency)
        self._local = threading.local()
        self._credentials = credentials
        self._auth_lock = threading.Lock()
        self._clients: list[OneShotFCM] = []
        self._clients_lock = threading.Lock()
        self._closed = False

    def _thread_client(self) -> OneShotFCM:
        client: OneShotFCM | None = getattr(self._local, "client", None)
        if client is None:
            client = OneShotFCM(
                credentials=self._credentials,
                auth_lock=self._auth_lock,
                project_id=self._project_id,
                endpoint_base=self._endpoint_base,
            )
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def _send_blocking(self, n: Notification) -> SendResult:
        client = self._thread_client()
        payload = client.parse_payload(**build_message_options(n, self._clock()))
        try:
            response = client.send_request(payload, timeout=self._timeout)
        except google.auth.exceptions.GoogleAuthError as exc:
            log.warning("FCM access token refresh failed: %s", exc)
            return SendResult(outcome=Outcome.RETRY, reason="AuthError")
        except requests.Timeout:
            return SendResult(outcome=Outcome.RETRY, reason="Timeout")
        except requests.RequestException as exc:
            log.debug("FCM send failed: %r", exc)
            return SendResult(outcome=Outcome.RETRY, reason="ConnectionError")
        result = classify_response(
            response.status_code,
            response.content,
            response.headers.get("Retry-After"),
            datetime.fromtimestamp(self._clock(), UTC),
        )
        if response.status_code == 401:
            client.invalidate_token()
        return result

    async def send(self, n: Notification) -> SendResult:
        if self._closed:
            return SendResult(outcome=Outcome.RETRY, reason="ProviderClosed")
        async with self._slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._send_blocking, n)

    async def send_many(self, ns: Sequence[Notification]) -> list[SendResult]:
        return await send_bounded(self.send, ns, self._concurrency)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
