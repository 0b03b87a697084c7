"""The request path's one seam into tenancy: a pure-ASGI middleware that turns the
`Authorization` header into a `Principal`, admits the request against the key's limits, adds
the `x-ratelimit-*` headers, and settles the real token count when the response ends (a stream
the client cut included). Routes and services find the principal in `request.state.principal`.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import AuthenticationFailed, PermissionDenied, RagwayError, RateLimited
from server.observability.record import RequestRecord
from server.settings import RagwaySettings
from server.shared_state import SharedState
from server.tenancy.keyfile import KeyFile
from server.tenancy.limiter import Admission, Limiter
from server.tenancy.metrics import TenantMetrics
from server.tenancy.principal import ANONYMOUS, Principal

log = logging.getLogger("ragway.tenancy")

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
_AUTHORIZATION = b"authorization"
_CONTENT_LENGTH = b"content-length"
# A request's prompt tokens are estimated from its body at about four bytes a token; the
# real count replaces the estimate when the answer ends.
_BYTES_PER_TOKEN = 4
_MAX_KEY_CHARS = 512


class Tenancy:
    """Keys and limits of one gateway, built in the lifespan. `keys` None: auth is off."""

    def __init__(
        self,
        keys: KeyFile | None,
        limiter: Limiter,
        metrics: TenantMetrics,
        *,
        public_metrics: bool = False,
    ):
        self.keys = keys
        self.limiter = limiter
        self.metrics = metrics
        self.open_paths = OPEN_PATHS | ({"/metrics"} if public_metrics else set())

    @property
    def enabled(self) -> bool:
        return self.keys is not None

    def start(self) -> None:
        """The key file's poll and the Redis settlement batches (lifespan)."""
        if self.keys is not None:
            self.keys.start()
            self.limiter.start()

    async def aclose(self) -> None:
        await self.limiter.aclose()
        if self.keys is not None:
            await self.keys.aclose()

    def authenticate(self, scope: Scope) -> Principal:
        if self.keys is None:
            return ANONYMOUS
        header = None
        for name, value in scope["headers"]:
            if name == _AUTHORIZATION:
                header = value
                break
        if header is None:
            raise AuthenticationFailed(
                "No API key given: send it as `Authorization: Bearer <key>`."
            )
        scheme, _, key = header.decode("latin-1").strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key or len(key) > _MAX_KEY_CHARS:
            raise AuthenticationFailed(
                "Malformed Authorization header: expected `Authorization: Bearer <key>`."
            )
        principal = self.keys.ring.lookup(key)
        if principal is None:
            raise AuthenticationFailed("Incorrect or expired API key provided.")
        return principal

    def reject(self, tenant: str, exc: RagwayError) -> None:
        reason = exc.reason if isinstance(exc, RateLimited) else exc.error_type
        self.metrics.rejections.labels(tenant, reason).inc()


def open_tenancy(
    settings: RagwaySettings, shared: SharedState, registry: CollectorRegistry
) -> Tenancy:
    """Built in the lifespan. A missing or malformed key file raises KeyFileError: with auth
    on, the gateway does not start."""
    auth = settings.auth
    keys = KeyFile(auth.keys_file, auth.reload_interval) if auth.keys_file else None
    metrics = TenantMetrics(registry)
    limiter = Limiter(
        shared,
        fail_mode=auth.limits_fail_mode,
        slot_ttl=auth.slot_ttl,
        on_fallback=lambda mode: metrics.limit_fallbacks.labels(mode).inc(),
    )
    return Tenancy(keys, limiter, metrics, public_metrics=auth.public_metrics)


def _estimate(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == _CONTENT_LENGTH:
            return int(value) // _BYTES_PER_TOKEN if value.isdigit() else 0
    return 0


def _used(record: RequestRecord) -> int:
    return (record.prompt_tokens or 0) + (record.completion_tokens or 0)


def _charged(record: RequestRecord | None, admission: Admission) -> int:
    """The tokens to charge: the worker's usage, else (a stream cut before its usage chunk)
    the estimate plus one token per chunk relayed, else nothing."""
    if record is None:
        return admission.estimate
    if record.prompt_tokens is not None or record.completion_tokens is not None:
        return _used(record)
    if record.ttft is not None:
        return admission.estimate + len(record.gaps) + 1
    return 0


async def _send_error(exc: RagwayError, send: Send) -> None:
    headers = [(b"content-type", b"application/json")]
    headers += [(k.encode(), v.encode()) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": orjson.dumps(exc.body())})


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *extra]
        await send(message)

    return send_with_headers


class TenancyMiddleware:
    """Sits inside RequestContextMiddleware (it needs the request id and record)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: dict[str, Any] = scope.setdefault("state", {})
        gateway = state.get("ragway")
        if scope["type"] != "http" or gateway is None or not gateway.tenancy.enabled:
            if scope["type"] == "http":
                state["principal"] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        tenancy: Tenancy = gateway.tenancy
        if scope["path"] in tenancy.open_paths:
            state["principal"] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        record: RequestRecord | None = state.get("record")
        try:
            principal = tenancy.authenticate(scope)
        except AuthenticationFailed as exc:
            tenancy.reject("unauthenticated", exc)
            await _send_error(exc, send)
            return
        if record is not None:
            record.tenant = principal.name
        if scope["path"] == "/metrics" and not principal.admin:
            denied = PermissionDenied("/metrics needs an admin key.")
            tenancy.reject(principal.name, denied)
            await _send_error(denied, send)
            return
        await self._admitted(tenancy, principal, record, scope, receive, send)

    async def _admitted(
        self, tenancy: Tenancy, principal: Principal, record: RequestRecord | None,
        scope: Scope, receive: Receive, send: Send,
    ) -> None:  # fmt: skip
        state = scope["state"]
        state["principal"] = principal
        if not principal.limits.counted:
            tenancy.metrics.admitted(principal.name)
            try:
                await self.app(scope, receive, send)
            finally:
                if record is not None:
                    tenancy.metrics.charged(principal.name, _used(record))
            return
        request_id = state.get("request_id", "")
        try:
            admission = await tenancy.limiter.admit(principal, _estimate(scope), request_id)
        except RagwayError as exc:
            tenancy.reject(principal.name, exc)
            await _send_error(exc, send)
            return
        tenancy.metrics.admitted(principal.name)
        if record is not None:
            # RequestContextMiddleware adds them to the response's head, with the request id:
            # one send wrapper per request instead of two (each runs on every streamed chunk).
            record.response_headers = admission.headers()
            inner = send
        else:
            inner = _with_headers(send, admission.headers())
        try:
            await self.app(scope, receive, inner)
        finally:
            tokens = _charged(record, admission)
            tenancy.metrics.charged(principal.name, tokens)
            tenancy.limiter.settle(admission, tokens)
