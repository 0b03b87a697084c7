"""What a principal may do with one request: which models, which knowledge bases, which vLLM
extension fields, how many tokens per answer; and the tenant's `cache_salt`.

Plain functions over the principal and the parsed body; the services call them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from server.errors import InvalidRequest, PermissionDenied
from server.tenancy.principal import KbAccess, Principal

# vLLM fields that reach past one tenant's request (scheduling, KV transfer, templates,
# raw embeddings): only admin keys, or keys that list them in `allow_fields`, may send them.
GUARDED_FIELDS = (
    "priority",
    "kv_transfer_params",
    "chat_template",
    "chat_template_kwargs",
    "prompt_embeds",
)
_MAX_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")


def require_model(principal: Principal, model: str, served: Callable[[str], str]) -> None:
    """A key may use a model it names, or an alias of a served model it names."""
    if principal.may_use_model(model) or principal.may_use_model(served(model)):
        return
    raise PermissionDenied(
        f"The key `{principal.name}` may not use the model `{model}`.", param="model"
    )


def require_kb(principal: Principal, knowledge_base: str, needed: KbAccess) -> None:
    if not principal.may(knowledge_base, needed):
        raise PermissionDenied(
            f"The key `{principal.name}` needs `{needed.value}` access to the knowledge base "
            f"`{knowledge_base}`.",
            param="knowledge_base",
        )


def may_see_model(principal: Principal, model: str, served: Callable[[str], str]) -> bool:
    """Whether `/v1/models` lists the model for this key (and `/v1/models/{id}` finds it)."""
    return (
        principal.admin or principal.may_use_model(model) or principal.may_use_model(served(model))
    )


def visible_models(
    principal: Principal, listing: dict[str, Any], served: Callable[[str], str]
) -> dict[str, Any]:
    if principal.admin:
        return listing
    cards = [card for card in listing["data"] if may_see_model(principal, str(card["id"]), served)]
    return {**listing, "data": cards}


def apply_to_body(
    principal: Principal, data: dict[str, Any], token_fields: tuple[str, ...] = _MAX_TOKEN_FIELDS
) -> tuple[bool, bool]:
    """Check the body's guarded fields and token cap (`token_fields`: the request's own names
    for it; the Responses API says `max_output_tokens`), and set the tenant's cache salt in
    `data`. Returns (rewritten, salted): rewritten when `data` must be serialised again; salted
    alone means the raw body only lacks the salt (see `with_salt`)."""
    changed = False
    if not principal.admin:
        for name in GUARDED_FIELDS:
            if name in data and name not in principal.allow_fields:
                raise InvalidRequest(
                    f"The field `{name}` is not allowed for the key `{principal.name}`.",
                    param=name,
                    code="field_not_allowed",
                )
    cap = principal.limits.max_tokens
    if cap is not None:
        asked = [data[f] for f in token_fields if data.get(f) is not None]
        for value in asked:
            if not isinstance(value, int) or value > cap:
                raise InvalidRequest(
                    f"max_tokens may be at most {cap} for the key `{principal.name}`.",
                    param="max_tokens",
                    code="max_tokens_exceeded",
                )
        if not asked:
            data[token_fields[0]] = cap
            changed = True
    salt = principal.cache_salt
    if salt is None:
        return changed, False
    if "cache_salt" in data:  # the client's own salt is replaced: serialise again
        changed = True
    data["cache_salt"] = salt
    return changed, True


def with_salt(raw: bytes, salt: str) -> bytes | None:
    """The raw JSON object with `"cache_salt"` added before its closing brace: cheaper than
    serialising the parsed body again. None when the bytes do not end like a non-empty object
    (then the caller serialises)."""
    return with_field(raw, b"cache_salt", b'"%s"' % salt.encode())


def with_field(raw: bytes, name: bytes, json_value: bytes) -> bytes | None:
    """The raw JSON object with `"name": json_value` added before its closing brace (the
    caller knows the name is not there yet); None when the bytes do not end like a non-empty
    object."""
    body = raw.rstrip()
    if not body.endswith(b"}") or body[:-1].rstrip().endswith(b"{"):
        return None
    return b'%s,"%s":%s}' % (body[:-1], name, json_value)
