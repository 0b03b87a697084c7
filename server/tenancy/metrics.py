"""Per-tenant series. The `tenant` label is a key's name from the key file (bounded by it), or
`anonymous` (auth off) or `unauthenticated` (no valid key)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter


class TenantMetrics:
    """Labelled children are cached per tenant: `labels()` costs a lock and a tuple on every
    call, and it would run twice a request."""

    def __init__(self, registry: CollectorRegistry):
        self._children: dict[str, tuple[Any, Any]] = {}
        self.requests = Counter(
            "ragway_tenant_requests_total",
            "Requests admitted, by tenant.",
            ("tenant",),
            registry=registry,
        )
        self.tokens = Counter(
            "ragway_tenant_tokens_total",
            "Tokens charged to a tenant (prompt + completion, from the workers' usage).",
            ("tenant",),
            registry=registry,
        )
        self.rejections = Counter(
            "ragway_tenant_rejections_total",
            "Requests refused, by tenant and reason (invalid_api_key, permission_denied, "
            "rpm, tpm, tokens_per_day, concurrency, field_not_allowed, max_tokens).",
            ("tenant", "reason"),
            registry=registry,
        )
        self.limit_fallbacks = Counter(
            "ragway_tenant_limit_fallbacks_total",
            "Rate-limit checks where Redis failed, by the fail mode applied (open: counted in "
            "this process; closed: answered 503).",
            ("mode",),
            registry=registry,
        )

    def _of(self, tenant: str) -> tuple[Any, Any]:
        children = self._children.get(tenant)
        if children is None:
            children = self.requests.labels(tenant), self.tokens.labels(tenant)
            self._children[tenant] = children
        return children

    def admitted(self, tenant: str) -> None:
        self._of(tenant)[0].inc()

    def charged(self, tenant: str, tokens: int) -> None:
        if tokens:
            self._of(tenant)[1].inc(tokens)
