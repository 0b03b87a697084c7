"""Thin FastAPI routers: read the request, call one service method, return the response."""
