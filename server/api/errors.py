"""Exception handlers: everything leaves as an OpenAI error object with the right status."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from server.api.edge import json_response
from server.errors import (
    InvalidRequest,
    MethodNotAllowed,
    RagwayError,
    RouteNotFound,
    UpstreamError,
    UpstreamStatus,
    error_body,
)
from server.observability.metrics import GatewayMetrics

log = logging.getLogger("ragway.errors")
_PARTS = frozenset({"body", "query", "path", "header", "cookie"})


def ragway_error_response(exc: RagwayError, metrics: GatewayMetrics) -> Response:
    """A RagwayError as the client gets it (the app's handler, and server/api/fast_lane.py)."""
    if isinstance(exc, UpstreamError):
        metrics.upstream_errors.labels(exc.error_type).inc()
    if isinstance(exc, UpstreamStatus):
        # The worker's own error, relayed with its status and body unchanged.
        return Response(exc.content, exc.upstream_status, media_type=exc.content_type)
    response = json_response(exc.body(), exc.status)
    response.headers.update(exc.headers)
    return response


def install_error_handlers(app: FastAPI, metrics: GatewayMetrics) -> None:
    async def on_ragway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RagwayError)
        return ragway_error_response(exc, metrics)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = first.get("loc", ())
        # ("query", "offset") names `offset`: the part of the request is not the parameter.
        loc = [str(p) for p in where[1 if where[:1] and where[0] in _PARTS else 0 :]]
        message = f"Invalid request: {first.get('msg', 'invalid body')}."
        return json_response(InvalidRequest(message, param=loc[0] if loc else None).body(), 400)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        error: RagwayError
        if exc.status_code == 404:
            error = RouteNotFound(f"Unknown route {request.method} {request.url.path}.")
        elif exc.status_code == 405:
            error = MethodNotAllowed(f"Method {request.method} is not allowed on this route.")
        else:
            return json_response(error_body(str(exc.detail)), exc.status_code)
        return json_response(error.body(), error.status)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return json_response(
            error_body("The gateway failed unexpectedly.", "server_error", code="internal_error"),
            500,
        )

    app.add_exception_handler(RagwayError, on_ragway_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
