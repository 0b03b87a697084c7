"""`python -m server`: the gateway, configured from RAGWAY_* variables and the optional YAML
file named by RAGWAY_CONFIG_FILE."""

from __future__ import annotations

import uvicorn

from server.app import create_app
from server.observability.logs import configure_logging
from server.settings import RagwaySettings
from server.tenancy.keys import KeyFileError, read_entries


def main() -> None:
    settings = RagwaySettings.load()
    configure_logging(settings.log_level)
    if settings.auth.keys_file is not None:
        try:  # fail before serving, with the entry named, rather than in the lifespan
            read_entries(settings.auth.keys_file)
        except KeyFileError as exc:
            raise SystemExit(f"ragway: auth is on but the key file is unusable: {exc}") from None
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
