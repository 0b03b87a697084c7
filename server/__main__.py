"""`python -m server`: the gateway, configured from RAGWAY_* variables and the optional YAML
file named by RAGWAY_CONFIG_FILE."""

from __future__ import annotations

from types import FrameType

import uvicorn

from server.app import create_app
from server.drain import Drain
from server.http_server import server_config
from server.observability.logs import configure_logging
from server.settings import RagwaySettings


class DrainingServer(uvicorn.Server):
    """uvicorn, which stops accepting connections on SIGTERM/SIGINT, plus ragway's drain."""

    def __init__(self, config: uvicorn.Config, drain: Drain):
        super().__init__(config)
        self._drain = drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._drain.begin()
        super().handle_exit(sig, frame)


def main() -> None:
    settings = RagwaySettings.load()
    configure_logging(settings.log_level)
    drain = Drain(settings.shutdown.grace)
    config = server_config(create_app(settings, drain=drain), settings)
    DrainingServer(config, drain).run()


if __name__ == "__main__":
    main()
