"""`python -m server`: the gateway, configured from RAGWAY_* variables and the optional YAML
file named by RAGWAY_CONFIG_FILE."""

from __future__ import annotations

import uvicorn

from server.app import create_app
from server.http_server import server_config
from server.observability.logs import configure_logging
from server.settings import RagwaySettings


def main() -> None:
    settings = RagwaySettings.load()
    configure_logging(settings.log_level)
    uvicorn.Server(server_config(create_app(settings), settings)).run()


if __name__ == "__main__":
    main()
