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
from server.tenancy.keys import KeyFileError, read_entries


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
    if settings.auth.keys_file is not None:
        try:  # fail before serving, with the entry named, rather than in the lifespan
            read_entries(settings.auth.keys_file)
        except KeyFileError as exc:
            raise SystemExit(f"ragway: auth is on but the key file is unusable: {exc}") from None
    drain = Drain(settings.shutdown.grace)
    config = server_config(create_app(settings, drain=drain), settings)
    DrainingServer(config, drain).run()


if __name__ == "__main__":
    main()
