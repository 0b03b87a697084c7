"""`python -m server`: the gateway, configured from RAGWAY_* variables and the optional YAML
file named by RAGWAY_CONFIG_FILE."""

from __future__ import annotations

import math
from types import FrameType

import uvicorn

from server.app import create_app
from server.drain import Drain
from server.observability.logs import configure_logging
from server.settings import RagwaySettings

# uvicorn's own graceful-shutdown timeout, beyond the drain's grace: time for the streams cut
# at the end of the grace to send their error event and close.
_SHUTDOWN_MARGIN_S = 2.0


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
    config = uvicorn.Config(
        create_app(settings, drain=drain),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
        # Longer than any client's pool keep-alive, so clients never reuse a closing socket.
        timeout_keep_alive=75,
        timeout_graceful_shutdown=math.ceil(settings.shutdown.grace + _SHUTDOWN_MARGIN_S),
    )
    DrainingServer(config, drain).run()


if __name__ == "__main__":
    main()
