"""Talking to workers: the HTTP client, SSE framing, and translation of transport errors."""
