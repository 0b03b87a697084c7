"""One request's facts, filled in as it is served and turned into metrics and a log line when
its response ends: who asked for what, which worker answered, when the first token came, how
many tokens went each way."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from server.observability.metrics import UNKNOWN, GatewayMetrics

access_log = logging.getLogger("ragway.access")


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    model: str = UNKNOWN  # a bounded label (see Catalog.label)
    worker: str | None = None
    tenant: str | None = None  # the API key's name (see server/tenancy)
    status: int = 500
    ttft: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    _last_chunk: float | None = None
    gaps: list[float] = field(default_factory=list)
    # A caller's X-Request-Id that was refused (too long, or not plain ASCII), for the log.
    client_request_id: str | None = None
    # Headers for the response's head, set by inner layers before it starts (rate limits).
    response_headers: Sequence[tuple[bytes, bytes]] = ()

    def chunk_sent(self) -> None:
        """A streamed chunk went to the client: the first sets TTFT, later ones the gaps."""
        now = time.perf_counter()
        if self._last_chunk is None:
            self.ttft = now - self.started
        else:
            self.gaps.append(now - self._last_chunk)
        self._last_chunk = now

    def usage(self, usage: Any) -> None:
        """Token counts from an OpenAI `usage` object, if it is one."""
        if isinstance(usage, dict):
            # Chat and completions say prompt/completion; the Responses API, input/output.
            prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
            completion = usage.get("completion_tokens", usage.get("output_tokens"))
            self.prompt_tokens = prompt if isinstance(prompt, int) else None
            self.completion_tokens = completion if isinstance(completion, int) else None

    def finish(self, route: str | None, metrics: GatewayMetrics) -> None:
        took = time.perf_counter() - self.started
        if route is not None:  # traffic routes only; probes and scrapes are not counted
            metrics.observe_request(
                route, self.model, self.status, took, self.ttft, self.gaps,
                (self.prompt_tokens, self.completion_tokens),
            )  # fmt: skip
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(self._line(took))

    def _line(self, took: float) -> str:
        return orjson.dumps(
            {
                "request_id": self.request_id,
                "method": self.method,
                "path": self.path,
                "model": self.model,
                "tenant": self.tenant,
                "worker": self.worker,
                "status": self.status,
                "ttft_s": None if self.ttft is None else round(self.ttft, 6),
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "duration_s": round(took, 6),
                **(
                    {}
                    if self.client_request_id is None
                    else {"client_request_id": self.client_request_id}
                ),
            }
        ).decode()
