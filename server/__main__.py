"""`python -m server`: the gateway, configured from RAGWAY_* variables and the optional YAML
file named by RAGWAY_CONFIG_FILE."""

from __future__ import annotations

import uvicorn

from server.app import create_app
from server.observability.logs import configure_logging
from server.settings import RagwaySettings


def main() -> None:
    settings = RagwaySettings.load()
    configure_logging(settings.log_level)
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
