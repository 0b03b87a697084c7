"""The OpenAI POST routes (chat, completions, embeddings), reached without Starlette's routing
stack.

Every request to them used to pass FastAPI's exception middleware, its exit-stack middleware
and the router, which tries each route's regular expression in turn, before reaching an
endpoint that needs none of it (server/api/openai.py's plain routes take the raw request). This
middleware, the innermost of ragway's, sends them straight to their endpoint by an exact
path lookup and answers a RagwayError the way the app's handler does
(server/api/errors.py: `ragway_error_response`). Anything else passes through: another
method on these paths still gets the router's 405, and an unexpected exception still reaches
the app's 500 handler. The router keeps the routes too, so that nothing depends on this lane.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from server.api.edge import PlainEndpoint
from server.errors import RagwayError


class FastLane:
    def __init__(
        self,
        app: ASGIApp,
        routes: Iterable[Route],
        on_error: Callable[[RagwayError], Response],
    ):
        self.app = app
        self._on_error = on_error
        self._lanes: dict[str, tuple[Route, PlainEndpoint]] = {}
        for route in routes:
            assert isinstance(route.endpoint, PlainEndpoint), route.path
            self._lanes[route.path] = (route, route.endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self._lanes.get(scope["path"]) if scope["type"] == "http" else None
        if lane is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        route, endpoint = lane
        scope["route"] = route  # what the router sets: the request's record names its route
        try:
            response = await endpoint.handler(Request(scope, receive, send))
        except RagwayError as exc:  # nothing sent yet: answered as the app's handler would
            response = self._on_error(exc)
        await response(scope, receive, send)
