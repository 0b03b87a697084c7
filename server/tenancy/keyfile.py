"""The key file in a running gateway: loaded at start (a bad file stops the start), then
polled for changes and reloaded without a restart.

The poll compares the file's inode, size and mtime. A Kubernetes Secret volume updates by
swapping a `..data` symlink, so the path resolves to a new inode; an editor or `ragway keys`
replaces the file (new inode too). A reload that fails keeps the keys already loaded and logs
the error: a running gateway never falls open because of a bad edit.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from server.tenancy.keys import KeyFileError, KeyRing, read_entries

log = logging.getLogger("ragway.tenancy")

_Signature = tuple[int, int, int, int] | None


def _signature(path: Path) -> _Signature:
    try:
        st = os.stat(path)  # follows symlinks: a swapped Secret target shows as a new inode
    except OSError:
        return None
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


class KeyFile:
    def __init__(self, path: Path, interval: float):
        self.path = path
        self._interval = interval
        self._signature = _signature(path)
        self.ring = KeyRing(read_entries(path))  # raises KeyFileError: the start fails
        self._task: asyncio.Task[None] | None = None
        log.info("loaded %d API keys from %s", len(self.ring), path)

    def check(self) -> bool:
        """Reload if the file changed; True when new keys were loaded."""
        signature = _signature(self.path)
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            self.ring = KeyRing(read_entries(self.path))
        except KeyFileError as exc:
            log.error("key file change ignored, keeping the %d keys loaded: %s",
                      len(self.ring), exc)  # fmt: skip
            return False
        log.info("reloaded %d API keys from %s", len(self.ring), self.path)
        return True

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll(), name="ragway-keyfile")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                # A stat and, rarely, a small read: off the loop all the same (network volumes).
                await asyncio.to_thread(self.check)
            except Exception:
                log.exception("checking the key file failed")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
