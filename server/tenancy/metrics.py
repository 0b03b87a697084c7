"""Per-tenant series. The `tenant` label is a key's name from the key file (bounded by it), or
`anonymous` (auth off) or `unauthenticated` (no valid key)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from server.observability.series import Series


class TenantMetrics:
    def __init__(self, registry: CollectorRegistry):
        self._series = Series()
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

    def admitted(self, tenant: str) -> None:
        self._series(self.requests, tenant).inc()

    def charged(self, tenant: str, tokens: int) -> None:
        if tokens:
            self._series(self.tokens, tenant).inc(tokens)
