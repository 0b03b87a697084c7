"""`ragway up`'s readiness probe (ragway/stack.py `answers`): whatever answers, it says yes or
no, never raises."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ragway.stack import answers, free_port


@contextmanager
def _echoing_server() -> Iterator[int]:
    """A socket that sends the request back, as a probe that connected to itself reads it
    (TCP simultaneous open on a free ephemeral port)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            connection.sendall(connection.recv(4096))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.close()
        thread.join(10)


def test_a_probe_that_reads_its_own_request_back_is_not_ready() -> None:
    with _echoing_server() as port:
        assert answers(f"http://127.0.0.1:{port}/health") is False


def test_nothing_listening_is_not_ready() -> None:
    assert answers(f"http://127.0.0.1:{free_port()}/health") is False
