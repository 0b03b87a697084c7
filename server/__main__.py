"""`python -m server`: the gateway, configured from RAGWAY_* variables and the optional YAML
file named by RAGWAY_CONFIG_FILE."""

from __future__ import annotations

import gc
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


# The collector's youngest generation is collected every 700 net allocations by default:
# several times a request in the gateway, and each pass moves the objects of requests still in
# flight to an older generation, where they build up to full collections of the whole heap
# (FastAPI's, pydantic's and chromadb's modules included). In a process that served chats
# in a loop (in-process, auth on, 10,000 requests, 2026-11-30), the collector took about 1.2 s
# of CPU by default and 0.2 s with the heap built at start frozen and this threshold.
GC_YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """What start-up built (modules, settings, the app) lives as long as the process: out of
    the collector's sight for good, and the youngest generation collected less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


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
    settle_heap()
    DrainingServer(config, drain).run()


if __name__ == "__main__":
    main()
