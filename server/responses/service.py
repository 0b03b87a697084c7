"""The Responses API over stateless workers: expand `previous_response_id` into the whole
conversation, send it to a worker (the previous turn's while it is healthy and not overloaded),
and store the answer for the next turn.

Workers get `store: false` and no `previous_response_id`, and `request_id` set to ragway's own
response id, which vLLM uses as the response's id: the id a client sees is the id ragway stores
under, in JSON and in streams, without rewriting any event.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import orjson

from router.prefix import block_hashes
from router.types import WorkerKind
from server.errors import InvalidRequest, ResponseNotFound, ResponseStoreUnavailable
from server.observability.record import RequestRecord
from server.protocol.common import parse_request
from server.protocol.responses import ResponsesRequest
from server.responses.items import Item, history, input_items
from server.responses.rag import apply_rag
from server.responses.store import ResponseStore, StoredResponse
from server.services.catalog import Catalog
from server.services.generation import Endpoint, GenerationService, Prepared, Relayed
from server.services.rag_chat import RagChat
from server.services.routing import session_key
from server.settings import RagwaySettings
from server.tenancy.principal import ANONYMOUS, Principal
from server.tenancy.scopes import apply_to_body, require_model
from server.upstream.client import Reply

log = logging.getLogger("ragway.responses")
_COMPLETED = b"event: response.completed"
# Fields a worker must not see: ragway owns the state, and RAG is ragway's.
_NOT_FORWARDED = ("rag", "previous_response_id", "conversation")


def owner_of(principal: Principal) -> str | None:
    """The tenant a stored response belongs to: the key's name; None on an open gateway."""
    return principal.name if principal.authenticated else None


@dataclass(frozen=True, slots=True)
class Turn:
    """One prepared request: the worker request, and what to store once it is answered."""

    prepared: Prepared
    response_id: str
    owner: str | None
    store: bool
    previous_response_id: str | None
    chain: tuple[str, ...]
    input_items: list[Item]


class ResponsesService:
    def __init__(
        self,
        generation: GenerationService,
        catalog: Catalog,
        store: ResponseStore,
        settings: RagwaySettings,
        rag: RagChat | None = None,
    ):
        self._generation = generation
        self._catalog = catalog
        self.store = store
        self._settings = settings.responses
        self._limits = settings.limits
        self._routing = settings.routing
        self._rag = rag

    async def stored(self, response_id: str, owner: str | None, param: str | None = None
                     ) -> StoredResponse:  # fmt: skip
        found = await self.store.get(response_id)
        if found is None or found.owner != owner:
            raise ResponseNotFound(response_id, param=param)
        return found

    async def delete(self, response_id: str, owner: str | None) -> dict[str, Any]:
        await self.stored(response_id, owner)
        await self.store.delete(response_id)
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    async def _history(self, previous: StoredResponse) -> tuple[tuple[str, ...], list[Item]]:
        chain = (*previous.chain, previous.id)
        if len(chain) > self._settings.max_chain_depth:
            raise InvalidRequest(
                f"The conversation is longer than {self._settings.max_chain_depth} turns "
                "(responses.max_chain_depth).",
                param="previous_response_id",
                code="conversation_too_long",
            )
        # An expired or deleted earlier turn drops out of the history; the chain goes on.
        earlier = [t for t in await self.store.get_many(previous.chain) if t is not None]
        return chain, history([*earlier, previous])

    async def prepare(
        self,
        raw: bytes,
        request_id: str,
        principal: Principal = ANONYMOUS,
        session_header: str | None = None,
    ) -> Turn:
        data, request = await parse_request(raw, ResponsesRequest, self._limits)
        require_model(principal, request.model, self._catalog.served_name)
        apply_to_body(principal, data, ("max_output_tokens",))
        owner = owner_of(principal)
        items = input_items(request.input)
        store = request.store is not False
        if store and len(orjson.dumps(items)) > self._settings.max_stored_bytes:
            raise InvalidRequest(
                f"The input is larger than responses.max_stored_bytes "
                f"({self._settings.max_stored_bytes} bytes) and could not be stored.",
                param="input",
                code="input_too_large",
            )
        chain: tuple[str, ...] = ()
        previous: StoredResponse | None = None
        full = items
        if request.previous_response_id is not None:
            previous = await self.stored(
                request.previous_response_id, owner, "previous_response_id"
            )
            chain, earlier = await self._history(previous)
            full = [*earlier, *items]
        rag = None
        if self._rag is not None:
            applied = await apply_rag(self._rag, data, full, request.model, request_id, principal)
            if applied is not None:
                full, rag = applied
        target = rag.model if rag is not None else request.model
        # Salted as chat's (prompt_prefix): a worker's cached prefix serves one tenant.
        routed = orjson.dumps(full).decode()
        if isinstance(salt := data.get("cache_salt"), str) and salt:
            routed = salt + "\x00" + routed
        prefix = block_hashes(routed, self._routing.prefix_block_chars)
        key = session_key(session_header, data)
        route = self._catalog.route(
            WorkerKind.CHAT, target, request_id, session_key=key, prefix=prefix,
            preferred=previous.worker if previous is not None else None,
        )  # fmt: skip
        response_id = f"resp_{uuid.uuid4().hex}"
        forwarded = {k: v for k, v in data.items() if k not in _NOT_FORWARDED}
        forwarded.update(model=route.served_model, input=full, store=False, request_id=response_id)
        # The caller's band inside the engine too, as for chats (vLLM's priority scheduling).
        if priority := self._generation.engine_priority(principal, route.served_model, data):
            forwarded["priority"] = priority
        prepared = Prepared(
            Endpoint.RESPONSES, request.model, target, bool(request.stream), route,
            orjson.dumps(forwarded), request_id, key, prefix, rag, principal=principal,
        )  # fmt: skip
        return Turn(prepared, response_id, owner, store, request.previous_response_id, chain, items)

    def _finished(self, turn: Turn, response: dict[str, Any]) -> dict[str, Any]:
        """The worker's response object as the client sees it: with the client's
        `previous_response_id` and `store`, and RAG's sources."""
        response = {**response, "previous_response_id": turn.previous_response_id,
                    "store": turn.store}  # fmt: skip
        if turn.prepared.rag is not None:
            response["sources"] = turn.prepared.rag.sources
        return response

    async def _save(self, turn: Turn, response: dict[str, Any], worker: str | None) -> None:
        if not turn.store or response.get("id") != turn.response_id:
            if turn.store:
                log.warning("worker answered id %r, not ragway's %s: not stored",
                            response.get("id"), turn.response_id)  # fmt: skip
            return
        stored = StoredResponse(
            turn.response_id, turn.owner, turn.prepared.model, worker, time.time(), turn.chain,
            turn.input_items, response,
        )  # fmt: skip
        encoded = stored.encode()
        if len(encoded) > self._settings.max_stored_bytes:
            log.warning("response %s is %d bytes, over responses.max_stored_bytes: not stored",
                        turn.response_id, len(encoded))  # fmt: skip
            return
        await self.store.put(turn.response_id, encoded, self._settings.ttl)

    async def unary(self, turn: Turn, record: RequestRecord) -> Reply:
        reply = await self._generation.unary(turn.prepared, record)
        answer = reply.json_object()
        if answer is None:
            return reply
        response = self._finished(turn, answer)
        await self._save(turn, response, record.worker)
        return Reply(reply.status, orjson.dumps(response), reply.content_type)

    async def stream(self, turn: Turn, record: RequestRecord) -> Relayed:
        relayed = await self._generation.stream(turn.prepared, record)
        return Relayed(self._tap(turn, record, relayed.events, relayed.line), relayed.line)

    async def _tap(
        self, turn: Turn, record: RequestRecord, events: AsyncIterator[bytes], line: bytes
    ) -> AsyncIterator[bytes]:
        """Relay the worker's events; the last one (`response.completed`, carrying the whole
        response and its usage) is stored before the client gets it, so a GET right after the
        stream ends finds it. `line` is the stream's own line ending (server/upstream/sse.py)."""
        completed = _COMPLETED + line
        async with aclosing(events):  # type: ignore[type-var]
            async for batch in events:
                at = batch.find(completed)
                if at >= 0:
                    batch = batch[:at] + await self._completed(turn, record, batch[at:], line)
                yield batch

    async def _completed(
        self, turn: Turn, record: RequestRecord, event: bytes, line: bytes
    ) -> bytes:
        head, _, rest = event.partition(line + b"data: ")
        data, end, tail = rest.partition(line + line)
        try:
            payload = orjson.loads(data)
            response = payload["response"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return event
        record.usage(response.get("usage"))
        response = self._finished(turn, response)
        try:
            await self._save(turn, response, record.worker)
        except ResponseStoreUnavailable as exc:
            # The client already has the answer; all that is lost is the next turn's context.
            log.warning("response %s not stored: %s", turn.response_id, exc.message)
        payload = {**payload, "response": response}
        return head + line + b"data: " + orjson.dumps(payload) + end + tail
