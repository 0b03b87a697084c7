"""From settings and a request body to the router's plain inputs: which policy serves a model,
and the request's routing hints (session key, prompt-prefix block hashes)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from router.load import LoadTracker
from router.policies import LeastLoad, Policy, PrefixAware, RoundRobin, SessionAffinity
from router.prefix import PrefixIndex, block_hashes
from router.types import WorkerKind
from server.settings import PolicyName, RoutingSettings


class PolicyBook:
    """One instance per policy (policies keep state: a rotation, a prefix index), chosen per
    served model from settings."""

    def __init__(
        self,
        settings: RoutingSettings,
        loads: LoadTracker,
        on_prefix_index_size: Callable[[int], None] | None = None,
    ):
        self._settings = settings
        self._on_prefix_index_size = on_prefix_index_size
        self.loads = loads
        # A conversation's previous worker keeps it while under this multiple of the average.
        self.preferred_load_factor = settings.session_load_factor
        self.prefix_index = PrefixIndex(settings.prefix_max_entries, ttl=settings.prefix_ttl)
        least = LeastLoad()
        self._policies: Mapping[PolicyName, Policy] = {
            PolicyName.ROUND_ROBIN: RoundRobin(),
            PolicyName.LEAST_LOAD: least,
            PolicyName.SESSION: SessionAffinity(settings.session_load_factor, fallback=least),
            PolicyName.PREFIX_AWARE: PrefixAware(
                self.prefix_index,
                beta=settings.prefix_beta,
                fallback=least,
                on_record=on_prefix_index_size,
            ),
        }

    def forget_worker(self, worker_id: str) -> None:
        """A worker left the pool: drop its prefix-index entries and its engine stats."""
        self.prefix_index.forget_worker(worker_id)
        self.loads.forget(worker_id)
        if self._on_prefix_index_size is not None:
            self._on_prefix_index_size(len(self.prefix_index))

    def name_for(self, kind: WorkerKind, served_model: str) -> PolicyName:
        default = (
            self._settings.chat_policy
            if kind is WorkerKind.CHAT
            else self._settings.embedding_policy
        )
        return self._settings.policies.get(served_model, default)

    def for_model(self, kind: WorkerKind, served_model: str) -> Policy:
        return self._policies[self.name_for(kind, served_model)]


def prompt_prefix(
    data: Mapping[str, Any], block_chars: int, cache_salt: Any = None
) -> tuple[int, ...]:
    """Block hashes of what a worker's prefix cache would key on: the chat messages in order
    (system prompt, injected context, earlier turns), or a completion's prompt text; salted
    as vLLM salts its cache blocks (`cache_salt`), so tenants never share entries."""
    messages = data.get("messages")
    if isinstance(messages, list):
        text = _chat_text(messages, data.get("tools"))
    else:
        prompt = data.get("prompt")
        text = prompt if isinstance(prompt, str) else orjson.dumps(prompt).decode()
    if isinstance(cache_salt, str) and cache_salt:
        text = cache_salt + "\x00" + text
    return block_hashes(text, block_chars)


def _chat_text(messages: list[Any], tools: Any) -> str:
    """The conversation in the order templates render it. Tool definitions go into the system
    turn, after the system prompt and before the first user turn (Hermes, Qwen, Llama 3.1), so
    agents that share a system prompt and a toolset share that prefix, whatever they ask."""
    if not tools:
        return orjson.dumps(messages).decode()
    lead = 0
    while lead < len(messages) and _is_system(messages[lead]):
        lead += 1
    return "".join(
        orjson.dumps(part).decode() for part in (messages[:lead], tools, messages[lead:])
    )


def _is_system(message: Any) -> bool:
    return isinstance(message, dict) and message.get("role") in ("system", "developer")


def session_key(header_value: str | None, data: Mapping[str, Any]) -> str | None:
    if header_value:
        return header_value
    user = data.get("user")
    return user if isinstance(user, str) and user else None
