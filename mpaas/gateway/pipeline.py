"""``POST /gateway``: the checks, in order, then the operation; every answer has a result code.

1. the body is bounded (``gateway_max_body_bytes``) before it is read;
2. the headers are validated and the signature verified (4002): the device key when the
   device has one (then it must use it), else the app key named by ``kid``;
3. the timestamp is within the clock window, ``gateway_clock_skew`` seconds (4003);
4. the nonce is unused within the window (4003) and the token buckets of the app, the
   device, the user and the operation each have a token (1002) — one round trip;
5. the operation exists in this version and is enabled (3000); the session is valid
   (2000); the user's tier reaches the operation's (3001); the body matches its input
   model (4001); the risk check passes (5000); then the handler runs.

Nothing is executed for a refused call. Unexpected failures answer 6666 with the
request id only; the traceback goes to the log.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel
from pydantic import ValidationError as PydanticError

from mpaas.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    MpaasError,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
)
from mpaas.gateway.admission import Admission, Bucket, Rate, retry_after_header
from mpaas.gateway.codes import CODES, GatewayError, ResultCode
from mpaas.gateway.keys import DeviceKey, KeyStore
from mpaas.gateway.metrics import UNKNOWN, GatewayMetrics
from mpaas.gateway.operation import (
    Call,
    NoOperations,
    OperationSource,
    OperationSpec,
    Principal,
    RiskCheck,
    SessionResolver,
)
from mpaas.gateway.signing import ECDSA_P256, SignedRequest, parse_request, verify_ecdsa, verify_hmac
from mpaas.logs import request_id_var
from mpaas.web.api import read_bounded
from mpaas.web.complete_response import CompleteResponse, ResponseHead

log = logging.getLogger("mpaas.gateway")
PATH = "/gateway"
HEADS = {
    code: ResponseHead(
        info.status, headers={"X-Mgs-Result-Code": str(int(code)), "Cache-Control": "no-store"}
    )
    for code, info in CODES.items()
}


@dataclass(frozen=True)
class GatewayConfig:
    window: float = 300.0
    max_body: int = 64 << 10
    app_rate: Rate = field(default_factory=lambda: Rate(2000, 1.0))
    device_rate: Rate = field(default_factory=lambda: Rate(20, 1.0))
    user_rate: Rate = field(default_factory=lambda: Rate(20, 1.0))


class Gateway:
    """The pipeline; ``operations``, ``sessions`` and ``risk`` are plugged in by the app factory."""

    def __init__(
        self,
        config: GatewayConfig,
        keys: KeyStore,
        admission: Admission,
        clock: Callable[[], float] = time.time,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.config, self.keys, self.admission, self.clock = config, keys, admission, clock
        self.metrics = metrics or GatewayMetrics()
        self.operations: OperationSource = NoOperations()
        self.sessions: SessionResolver | None = None
        self.risk: RiskCheck | None = None
        self.system: dict[tuple[str, int], OperationSpec] = {}

    def add_system(self, spec: OperationSpec) -> None:
        """Operations of the gateway itself (device keys), found before the domain's."""
        self.system[(spec.name, spec.version)] = spec

    def lookup(self, name: str, version: int) -> OperationSpec | None:
        spec = self.system.get((name, version)) or self.operations.get(name, version)
        return spec if spec is not None and spec.enabled else None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = perf_counter()
        operation = UNKNOWN
        response: web.StreamResponse
        try:
            body = await self._read_body(request)
            req = parse_request(request.method, request.path, request.headers, body)
            spec = self.lookup(req.operation, req.version)
            if spec is not None:
                operation = spec.name
            result = await self._process(req, spec, body)
            response = CompleteResponse(dumps({"result_code": 1000, "result": result}), HEADS[SUCCESS])
            code = 1000
        except GatewayError as exc:
            response, code = refusal(exc), int(exc.result)
        except Exception as exc:
            error = as_gateway_error(exc)
            response, code = refusal(error), int(error.result)
        self.metrics.record(operation, code, perf_counter() - started)
        return response

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.config.max_body
        if request.query_string:
            raise GatewayError(ResultCode.INVALID_PARAMETERS, "the gateway takes no query string")
        try:
            return await read_bounded(request, limit)
        except PayloadTooLarge:  # the gateway answers with its result code, not a bare 413
            raise GatewayError(ResultCode.INVALID_PARAMETERS, f"request body exceeds {limit} bytes") from None

    async def verify(self, req: SignedRequest) -> DeviceKey | None:
        """The signature (4002); returns the device key it was made with, if any."""
        sig = req.signature
        device_key = await self.keys.device_key(req.app, req.device)
        message = req.signing_string()
        if sig.alg == ECDSA_P256:
            if device_key is None or device_key.kid != sig.kid:
                raise GatewayError(ResultCode.SIGNATURE_INVALID)
            if not verify_ecdsa(device_key.key, message, sig.sig):
                raise GatewayError(ResultCode.SIGNATURE_INVALID)
        else:
            if device_key is not None and not device_key.revoked:
                raise GatewayError(ResultCode.SIGNATURE_INVALID, "this device must sign with its device key")
            secret = await self.keys.app_secret(req.app, sig.kid)
            if secret is None or not verify_hmac(secret, message, sig.sig):
                raise GatewayError(ResultCode.SIGNATURE_INVALID)
        if device_key is not None and device_key.revoked:
            raise GatewayError(ResultCode.ACCESS_DENIED, "this device has been blocked")
        return device_key if sig.alg == ECDSA_P256 else None

    def buckets(self, req: SignedRequest, spec: OperationSpec | None, who: Principal | None) -> list[Bucket]:
        app, c = req.app, self.config
        out = [
            Bucket(f"rl:{{{app}}}:app", "app", c.app_rate),
            Bucket(f"rl:{{{app}}}:dev:{req.device}", "device", c.device_rate),
        ]
        caller = f"d:{req.device}"
        if who is not None and who.user_id is not None:
            out.append(Bucket(f"rl:{{{app}}}:user:{who.user_id}", "user", c.user_rate))
            caller = f"u:{who.user_id}"
        if spec is not None and spec.rate is not None:
            out.append(Bucket(f"rl:{{{app}}}:op:{spec.name}:{spec.version}:{caller}", "operation", spec.rate))
        return out

    async def _process(self, req: SignedRequest, spec: OperationSpec | None, body: bytes) -> Any:
        device_key = await self.verify(req)
        now = self.check_clock(req)
        window = self.config.window
        kid = device_key.kid if device_key is not None else None
        principal = None
        if req.session and self.sessions is not None:
            principal = await self.sessions.resolve(req.app, req.device, req.session, kid)
        verdict = await self.admission.admit(
            f"nonce:{{{req.app}}}:{req.device}:{req.nonce}",
            req.timestamp_ms / 1000.0 + window + 1.0,
            self.buckets(req, spec, principal),
            now,
        )
        if not verdict.fresh:
            raise GatewayError(ResultCode.REQUEST_EXPIRED)
        if verdict.limited is not None:
            raise GatewayError(
                ResultCode.RATE_LIMITED,
                f"too many requests for this {verdict.limited}; retry later",
                retry_after=verdict.retry_after,
            )
        if spec is None:
            raise GatewayError(ResultCode.UNKNOWN_OPERATION)
        if req.session and principal is None:
            raise GatewayError(ResultCode.LOGIN_REQUIRED, "the session is invalid or has expired; log in")
        if principal is None and (spec.session_required or spec.min_level > 0):
            raise GatewayError(ResultCode.LOGIN_REQUIRED)
        if principal is not None and principal.level < spec.min_level:
            raise GatewayError(
                ResultCode.TIER_NOT_ALLOWED, f"this operation needs tier {spec.min_tier or spec.min_level}"
            )
        return await self.dispatch(req, spec, body, principal, kid)

    def check_clock(self, req: SignedRequest) -> float:
        """The time now, if the request's timestamp is within the window (else 4003)."""
        now = self.clock()
        if abs(now - req.timestamp_ms / 1000.0) > self.config.window:
            raise GatewayError(ResultCode.REQUEST_EXPIRED)
        return now

    async def dispatch(
        self,
        req: SignedRequest,
        spec: OperationSpec,
        body: bytes,
        principal: Principal | None,
        kid: str | None,
    ) -> Any:
        """The input check, the risk check and the handler; the result, serialised."""
        raw = parse_body(body)
        params = validate(spec.input, raw)
        call = Call(
            req.app,
            req.device,
            req.operation,
            req.version,
            req.nonce,
            request_id_var.get() or "",
            kid,
            principal,
            raw,
        )
        if self.risk is not None:
            await self.risk.check(call, spec, params)
        result = await spec.handler(call, params)
        return serialise(spec, result)


SUCCESS = ResultCode.SUCCESS


def dumps(value: Any) -> bytes:
    """Compact JSON; orjson (about ten times faster), else the standard library for what orjson
    refuses (integers past 64 bits, subclasses it does not know)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def parse_body(body: bytes) -> dict[str, Any]:
    if body == b"{}" or not body.strip():
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise GatewayError(ResultCode.INVALID_PARAMETERS, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise GatewayError(ResultCode.INVALID_PARAMETERS, "the body must be a JSON object")
    return data


def validate(model: type[BaseModel], data: dict[str, Any]) -> BaseModel:
    """The input model, or 4001 listing each bad field with pydantic's message (never the input)."""
    if not data and _no_input(model):
        return model.model_construct()  # nothing to check: no field, no validator
    try:
        return model.model_validate(data)
    except PydanticError as exc:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"][:200]}
            for e in exc.errors(include_url=False, include_input=False)[:20]
        ]
        raise GatewayError(ResultCode.INVALID_PARAMETERS, detail=problems) from None


def _no_input(model: type[BaseModel]) -> bool:
    """True for a model without fields or validators (``{}`` is its only valid input), cached."""
    found = _NO_INPUT.get(model)
    if found is None:
        decorators = model.__pydantic_decorators__
        found = _NO_INPUT[model] = not model.model_fields and not (
            decorators.model_validators or decorators.field_validators or decorators.validators
        )
    return found


_NO_INPUT: dict[type[BaseModel], bool] = {}


def serialise(spec: OperationSpec, result: Any) -> Any:
    if isinstance(result, BaseModel):
        if spec.output is not None and not isinstance(result, spec.output):
            result = spec.output.model_validate(result.model_dump())
        return result.model_dump(mode="json")
    if spec.output is not None:
        return spec.output.model_validate(result).model_dump(mode="json")
    return result


#: Domain errors raised by handlers, by the result code they answer with.
_BY_CLASS: tuple[tuple[type[MpaasError], ResultCode], ...] = (
    (BadRequest, ResultCode.INVALID_PARAMETERS),
    (Conflict, ResultCode.INVALID_PARAMETERS),
    (NotFound, ResultCode.INVALID_PARAMETERS),
    (Unauthorized, ResultCode.LOGIN_REQUIRED),
    (Forbidden, ResultCode.ACCESS_DENIED),
    (Unavailable, ResultCode.UPSTREAM_UNAVAILABLE),
)


def as_gateway_error(exc: Exception) -> GatewayError:
    """A handler's domain error keeps its message (written for users); anything else is 6666."""
    if isinstance(exc, MpaasError):
        for cls, code in _BY_CLASS:
            if isinstance(exc, cls):
                return GatewayError(code, exc.message)
    log.error("gateway operation failed", exc_info=exc)
    return GatewayError(ResultCode.SERVER_ERROR, f"internal error; request id {request_id_var.get()}")


def refusal(exc: GatewayError) -> web.StreamResponse:
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.detail is not None:
        error["detail"] = exc.detail
    body = dumps({"result_code": int(exc.result), "error": error})
    if log.isEnabledFor(logging.INFO):
        log.info("gateway refused", extra={"result_code": int(exc.result), "error_code": exc.code})
    if exc.retry_after is not None:
        headers = {"Retry-After": retry_after_header(exc.retry_after)}
        return CompleteResponse(body, HEADS[exc.result], headers=headers)
    return CompleteResponse(body, HEADS[exc.result])
