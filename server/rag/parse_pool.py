"""The parser pool: uploads are parsed in a few worker processes, never on the event loop nor
in the default thread pool, each parse bounded in time and each process in memory.

- Processes are spawned (not forked: the gateway has threads) with an address-space limit
  (`resource.setrlimit(RLIMIT_AS)`), so a decompression bomb ends in a MemoryError there.
- A parse that runs past `parse_timeout` is interrupted inside its process by a timer signal;
  if the process does not answer within a grace period after that, the pool's processes are
  killed and the pool is built again.
- Refusals (400, 413) are returned as data, since the exceptions do not pickle their fields.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import resource
import signal
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from types import FrameType

from server.errors import InvalidRequest, PayloadTooLarge, RagwayError
from server.rag.parsers import ParseCaps, ParsedText, parse_file

_GRACE = 5.0


class _Expired(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Refused:
    status: int
    message: str
    param: str | None
    code: str | None


def _limit_memory(max_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise _Expired


def _parse_job(kind: str, data: bytes, caps: ParseCaps, timeout: float) -> ParsedText | _Refused:
    """Runs in a pool process."""
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return parse_file(kind, data, caps)
    except RagwayError as exc:
        return _Refused(exc.status, exc.message, exc.param, exc.code)
    except _Expired:
        return _Refused(400, f"Parsing the file took longer than {timeout:g} s "
                        "(limits.parse_timeout).", "file", "parse_timeout")  # fmt: skip
    except (MemoryError, RecursionError):
        return _Refused(413, "Parsing the file needed more memory than allowed "
                        "(limits.parse_memory_bytes).", "file", "parse_memory")  # fmt: skip
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _warm() -> None:
    """Nothing: makes a process start."""


class ParserPool:
    def __init__(self, workers: int, timeout: float, memory_bytes: int, caps: ParseCaps):
        self._workers = workers
        self._timeout = timeout
        self._memory = memory_bytes
        self.caps = caps
        self._pool = self._build()
        self._slots = asyncio.Semaphore(workers)

    def _build(self) -> concurrent.futures.ProcessPoolExecutor:
        pool = concurrent.futures.ProcessPoolExecutor(
            self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_limit_memory,
            initargs=(self._memory,),
        )
        for _ in range(self._workers):
            pool.submit(_warm)  # start the processes now, not on the first upload
        return pool

    async def parse(self, kind: str, data: bytes) -> ParsedText:
        # One parse per process at a time: queued uploads wait here, where waiting is cheap.
        async with self._slots:
            loop = asyncio.get_running_loop()
            try:
                future = loop.run_in_executor(
                    self._pool, _parse_job, kind, data, self.caps, self._timeout
                )
                result = await asyncio.wait_for(future, self._timeout + _GRACE)
            except TimeoutError:
                self._restart()
                raise InvalidRequest(
                    f"Parsing the file took longer than {self._timeout:g} s "
                    "(limits.parse_timeout).",
                    param="file",
                    code="parse_timeout",
                ) from None
            except BrokenProcessPool:
                # The parsing process died under this file (or earlier): a fresh pool for the
                # next upload, and a refusal naming what happened for this one.
                self._restart()
                raise InvalidRequest(
                    "The file could not be parsed: the parsing process failed.",
                    param="file",
                    code="parse_failed",
                ) from None
        if isinstance(result, _Refused):
            error = PayloadTooLarge if result.status == 413 else InvalidRequest
            raise error(result.message, param=result.param, code=result.code)
        return result

    def _restart(self) -> None:
        old = self._pool
        for process in list(getattr(old, "_processes", {}).values()):
            process.kill()
        old.shutdown(wait=False, cancel_futures=True)
        self._pool = self._build()

    async def aclose(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, True, cancel_futures=True)
