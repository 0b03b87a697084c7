"""Logging setup for the gateway process."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str) -> None:
    """Plain lines for the gateway's own messages; one JSON object a line, on stdout, for the
    per-request access log (server.observability.record), so log shippers parse it as-is."""
    logging.basicConfig(
        level=level.upper() if level != "trace" else "DEBUG",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every upstream request at INFO; the access log already covers them.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    access = logging.getLogger("ragway.access")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.propagate = False
