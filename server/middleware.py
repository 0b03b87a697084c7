"""Pure-ASGI middleware: request id, in-flight count, and the per-request record that becomes
metrics and a JSON log line when the response ends.

Pure ASGI (not BaseHTTPMiddleware) so that nothing on the streaming path is buffered; the
duration runs to the last body byte, so streams are timed whole.
"""

from __future__ import annotations

import os
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.observability.metrics import GatewayMetrics
from server.observability.record import RequestRecord

REQUEST_ID = "x-request-id"
_REQUEST_ID_BYTES = REQUEST_ID.encode()
# A caller's id goes into logs, into the response and into the requests sent to workers, whose
# client (httpx) encodes header values as ASCII: anything else was a 500 there.
_ACCEPTED_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
# How much of a refused id the log keeps.
_LOGGED_ID_CHARS = 256


def _incoming_request_id(scope: Scope) -> tuple[str | None, str | None]:
    """The caller's id if acceptable, else None and (for the log) what the caller sent."""
    for name, value in scope["headers"]:
        if name == _REQUEST_ID_BYTES:
            if _ACCEPTED_ID.fullmatch(value):
                return value.decode("ascii"), None
            return None, value[:_LOGGED_ID_CHARS].decode("latin-1")
    return None, None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: GatewayMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        accepted, refused = _incoming_request_id(scope)
        # 32 random hex digits, as uuid4().hex gave, at a fraction of its cost.
        request_id = accepted or os.urandom(16).hex()
        record = RequestRecord(request_id, scope["method"], scope["path"])
        record.client_request_id = refused
        # A fresh dict per request: the lifespan state arrives shared by some servers (uvicorn
        # copies it, asgi-lifespan does not), and request-scoped keys must not leak.
        scope["state"] = {**scope.get("state", {}), "request_id": request_id, "record": record}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    *record.response_headers,
                    (_REQUEST_ID_BYTES, request_id.encode("ascii")),
                ]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            path = getattr(scope.get("route"), "path", None)
            # Only API traffic is counted; health, readiness and metrics scrapes are not.
            traffic = isinstance(path, str) and path.startswith("/v1/")
            record.finish(path if traffic else None, self.metrics)
