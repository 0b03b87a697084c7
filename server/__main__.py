"""`python -m server`: the gateway, configured from RAGWAY_* variables and the optional YAML
file named by RAGWAY_CONFIG_FILE."""

from __future__ import annotations

import logging

import uvicorn

from server.app import create_app
from server.settings import RagwaySettings


def main() -> None:
    settings = RagwaySettings.load()
    logging.basicConfig(
        level=settings.log_level.upper() if settings.log_level != "trace" else "DEBUG",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO; the gateway logs its own requests.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
        # Longer than any client's pool keep-alive, so clients never reuse a closing socket.
        timeout_keep_alive=75,
    )


if __name__ == "__main__":
    main()
