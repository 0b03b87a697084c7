"""RAG on chat completions: decide whether a request gets retrieval, retrieve, and rewrite it.

A request opts in with a `rag` object in its body (the OpenAI SDK's `extra_body`), or by naming
a virtual model from the settings (`support-bot` = base model + knowledge base + template +
options), in which case a client that only sets `model=` gets RAG unchanged; a `rag` object on
a virtual model overrides its options. The generation path calls `apply` once and relays the
answer with the sources this returns.

When retrieval fails or runs out of time, the knowledge base's fail mode decides: `open`
answers without context (header `x-ragway-rag: fail-open`, and a metric), `closed` is a 503.
An unknown knowledge base or a bad filter is the caller's mistake: a 4xx in both modes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import orjson

from router.types import WorkerKind
from server.errors import (
    InvalidRequest,
    KnowledgeBaseNotFound,
    RagwayError,
    RetrievalUnavailable,
)
from server.observability.metrics import GatewayMetrics
from server.protocol.knowledge import RagOptions, validated
from server.rag.augment import (
    augment,
    context_budget,
    fits_whole,
    retrieval_query,
    texts_to_count,
    whole_context,
)
from server.rag.records import KnowledgeBase, RetrievedChunk
from server.rag.retriever import Retriever
from server.rag.store import ChromaStore
from server.rag.tokens import TokenCounter
from server.services.catalog import Catalog, Route
from server.settings import FailMode, RagSettings, VirtualModel
from server.tenancy.principal import ANONYMOUS, KbAccess, Principal
from server.tenancy.scopes import require_kb
from server.upstream.client import Reply
from server.upstream.sse import LF

log = logging.getLogger("ragway.rag")
T = TypeVar("T")

SOURCES_HEADER = "x-ragway-sources"
RAG_HEADER = "x-ragway-rag"


@dataclass(frozen=True, slots=True)
class RagPlan:
    model: str
    knowledge_base: str
    template: str
    top_k: int
    min_score: float | None
    where: dict[str, Any] | None
    query_turns: int
    max_context_tokens: int


class Retrieved(NamedTuple):
    chunks: list[RetrievedChunk]
    budget: int  # tokens the context may take
    count: Callable[[str], int]  # for `augment`, when the whole context does not fit
    whole_tokens: int | None  # of `whole_context`, when counted


@dataclass(frozen=True, slots=True)
class RagOutcome:
    """What the generation path sends instead, and what it tells the client."""

    body: dict[str, Any]
    model: str  # the base model to route to
    sources: list[dict[str, Any]]
    headers: dict[str, str] = field(default_factory=dict)

    def reply_with_sources(self, reply: Reply) -> Reply:
        """A successful JSON answer with the extra top-level `sources` field."""
        answer = reply.json_object()
        if answer is None:
            return reply
        content = orjson.dumps({**answer, "sources": self.sources})
        return Reply(reply.status, content, reply.content_type)

    def first_events_with_sources(self, events: bytes, line: bytes = LF) -> bytes:
        """The stream's first event with `sources` added; every later event stays as sent.
        `line` is the stream's line ending (see server.upstream.sse)."""
        end = events.find(line + line)
        head = events[:end] if end >= 0 else b""
        if not head.startswith(b"data: {") or b"\n" in head or b"\r" in head:
            return events
        try:
            payload = orjson.loads(head[6:])
        except orjson.JSONDecodeError:
            return events
        return b"data: " + orjson.dumps({**payload, "sources": self.sources}) + events[end:]


def _first(*values: T | None) -> T:
    """The first value that is set: the request's, the virtual model's, the default."""
    return next(v for v in values if v is not None)


def _first_or_none(*values: T | None) -> T | None:
    return next((v for v in values if v is not None), None)


def _discard(future: asyncio.Future[Any]) -> None:
    """Cancel `future`, or, if it is done, mark its exception seen (it is not asyncio's to log)."""
    if future.done():
        if not future.cancelled():
            future.exception()
    else:
        future.cancel()


class RagChat:
    def __init__(
        self,
        settings: RagSettings,
        catalog: Catalog,
        store: ChromaStore,
        retriever: Retriever,
        counter: TokenCounter,
        metrics: GatewayMetrics,
    ):
        self._settings = settings
        self._catalog = catalog
        self._store = store
        self._retriever = retriever
        self._counter = counter
        self._metrics = metrics

    def _plan(self, data: dict[str, Any], model: str) -> RagPlan | None:
        raw = data.get("rag")
        virtual = self._settings.virtual_models.get(model)
        if raw is None and virtual is None:
            return None
        asked = validated(RagOptions, raw if raw is not None else {}, "rag")
        base = virtual or VirtualModel(model=model, knowledge_base="")
        kb = asked.knowledge_base or base.knowledge_base
        if not kb:
            raise InvalidRequest(
                "`rag.knowledge_base` is required.", param="rag", code="missing_knowledge_base"
            )
        s = self._settings
        return RagPlan(
            model=base.model,
            knowledge_base=kb,
            template=base.template or s.template,
            top_k=_first(asked.top_k, base.top_k, s.top_k),
            min_score=_first_or_none(asked.min_score, base.min_score),
            where=_first_or_none(asked.filter, base.filter),
            query_turns=_first(asked.query_turns, base.query_turns, s.query_turns),
            max_context_tokens=_first(
                asked.max_context_tokens, base.max_context_tokens, s.max_context_tokens
            ),
        )

    async def apply(
        self,
        data: dict[str, Any],
        model: str,
        request_id: str,
        principal: Principal = ANONYMOUS,
    ) -> RagOutcome | None:
        """The rewritten request, or None when RAG does not apply to it."""
        plan = self._plan(data, model)
        if plan is None:
            return None
        require_kb(principal, plan.knowledge_base, KbAccess.READ)
        route = self._catalog.route(WorkerKind.CHAT, plan.model, request_id)
        body = {k: v for k, v in data.items() if k != "rag"}
        body["model"] = route.served_model
        query = retrieval_query(body["messages"], plan.query_turns)
        if query is None:
            return RagOutcome(body, plan.model, [], {SOURCES_HEADER: ""})
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._settings.retrieval_timeout):
                found = await self._retrieve(plan, route, body, query, request_id)
        except (KnowledgeBaseNotFound, InvalidRequest):
            raise
        except (RagwayError, TimeoutError) as exc:
            return self._failed(plan, body, exc)
        finally:
            self._metrics.rag_retrieval_duration.observe(time.perf_counter() - started)
        augmented = augment(
            body["messages"],
            found.chunks,
            template=plan.template,
            budget=found.budget,
            count=found.count,
            whole_tokens=found.whole_tokens,
        )
        body["messages"] = augmented.messages
        self._metrics.rag_retrievals.labels("ok").inc()
        self._metrics.rag_chunks_dropped.inc(augmented.dropped)
        sources = [{"knowledge_base": plan.knowledge_base, **c.card()} for c in augmented.used]
        ids = ",".join(c.id for c in augmented.used)
        return RagOutcome(body, plan.model, sources, {SOURCES_HEADER: ids})

    async def _retrieve(
        self, plan: RagPlan, route: Route, body: dict[str, Any], query: str, request_id: str
    ) -> Retrieved:
        """The chunks, the context's token budget, and their counts for `augment`. The prompt is
        counted on the worker while the query is embedded and searched; then the whole context
        is counted in one call, and each passage on its own only when it does not fit."""
        counting = asyncio.ensure_future(self._counter.prompt(route, body))
        try:
            chunks = await self._search(plan, query, request_id)
        except BaseException:
            counting.cancel()
            raise
        if not chunks:
            counting.cancel()
            return Retrieved([], 0, len, None)
        whole = whole_context(plan.template, chunks)
        counting_whole = asyncio.ensure_future(self._counter.count(route, [whole]))
        try:
            prompt, window = await counting
        except BaseException:
            counting_whole.cancel()
            raise
        whole_tokens = (await counting_whole)[whole]
        asked = body.get("max_completion_tokens") or body.get("max_tokens")
        reserved = asked if isinstance(asked, int) else self._settings.reserve_completion_tokens
        budget = context_budget(window, prompt, reserved, plan.max_context_tokens)
        if fits_whole(whole_tokens, budget):
            return Retrieved(chunks, budget, len, whole_tokens)
        counts = await self._counter.count(route, texts_to_count(plan.template, chunks))
        return Retrieved(chunks, budget, counts.__getitem__, whole_tokens)

    async def _search(self, plan: RagPlan, query: str, request_id: str) -> list[RetrievedChunk]:
        """The chunks for `query`. With the knowledge base's record known from an earlier call,
        the query is embedded and searched while the record is read again (to find that the
        base still exists, with the same embedding model) rather than after it."""

        def retrieve(kb: KnowledgeBase) -> asyncio.Future[list[RetrievedChunk]]:
            return asyncio.ensure_future(
                self._retriever.retrieve(
                    kb,
                    query,
                    top_k=plan.top_k,
                    where=plan.where,
                    min_score=plan.min_score,
                    request_id=request_id,
                )
            )

        known = self._store.last_known(plan.knowledge_base)
        if known is None:
            return await retrieve(await self._store.get(plan.knowledge_base))
        early = retrieve(known)
        try:
            kb = await self._store.get(plan.knowledge_base)
        except BaseException:
            _discard(early)
            raise
        if (kb.name, kb.embedding_model) != (known.name, known.embedding_model):
            _discard(early)  # recreated with another model since: search again
            return await retrieve(kb)
        return await early

    def _failed(self, plan: RagPlan, body: dict[str, Any], exc: Exception) -> RagOutcome:
        known = self._store.last_known(plan.knowledge_base)
        mode: FailMode = known.fail_mode if known else self._settings.fail_mode
        reason = exc.message if isinstance(exc, RagwayError) else "retrieval timed out"
        log.warning("retrieval from %s failed (%s): %s", plan.knowledge_base, mode, reason)
        if mode == "closed":
            self._metrics.rag_retrievals.labels("failed_closed").inc()
            raise RetrievalUnavailable(
                f"Retrieval from knowledge base `{plan.knowledge_base}` failed: {reason}"
            ) from exc
        self._metrics.rag_retrievals.labels("failed_open").inc()
        return RagOutcome(body, plan.model, [], {SOURCES_HEADER: "", RAG_HEADER: "fail-open"})
