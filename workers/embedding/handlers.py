"""Exception handlers: every error leaves the worker in OpenAI's shape, never FastAPI's
`{"detail": ...}`."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.errors import MethodNotAllowed, RagwayError, RouteNotFound, error_body
from workers.embedding.protocol import invalid_request

JSON = "application/json"


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RagwayError, _ragway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Starlette hands this one to its outermost middleware, which re-raises after answering,
    # so the traceback is still logged by uvicorn.
    app.add_exception_handler(Exception, _unexpected)


def _respond(error: RagwayError, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(error.body()), status_code=error.status, media_type=JSON, headers=headers
    )


async def _ragway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RagwayError)
    return _respond(exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return _respond(invalid_request(exc.errors()))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        error: RagwayError = RouteNotFound(f"No route for {request.method} {request.url.path}.")
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"Method {request.method} is not allowed on {request.url.path}.")
    else:
        body = error_body(
            str(exc.detail), "invalid_request_error" if exc.status_code < 500 else "server_error"
        )
        return Response(
            orjson.dumps(body), status_code=exc.status_code, media_type=JSON, headers=exc.headers
        )
    return _respond(error, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    return _respond(RagwayError("The embedding worker failed unexpectedly."))
