"""ragway's one exception tree and the OpenAI error shape.

Every error the gateway (or its embedding worker) raises on purpose is a `RagwayError`. The
class carries everything the edge needs: the HTTP status, the OpenAI `type` and `code`, and an
`error_type` that is also the bounded metrics label. Foreign exceptions are translated once, at
the boundary where they appear (see `server.upstream.errors`), never here.
"""

from __future__ import annotations

from typing import Any, ClassVar


def error_body(
    message: str,
    type_: str = "invalid_request_error",
    *,
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """The OpenAI error object: `{"error": {"message", "type", "param", "code"}}`."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class RagwayError(Exception):
    status: ClassVar[int] = 500
    type_: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None
    # Bounded label for metrics and logs.
    error_type: ClassVar[str] = "internal"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        # Response headers the error needs (WWW-Authenticate, Retry-After).
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type_, param=self.param, code=self.code)


class InvalidRequest(RagwayError):
    status = 400
    type_ = "invalid_request_error"
    error_type = "invalid_request"


class ModelNotFound(RagwayError):
    status = 404
    type_ = "invalid_request_error"
    default_code = "model_not_found"
    error_type = "model_not_found"

    def __init__(self, model: str):
        super().__init__(
            f"The model `{model}` does not exist or is not served by any worker.", param="model"
        )


class RouteNotFound(RagwayError):
    status = 404
    type_ = "invalid_request_error"
    default_code = "not_found"
    error_type = "not_found"


class MethodNotAllowed(RagwayError):
    status = 405
    type_ = "invalid_request_error"
    default_code = "method_not_allowed"
    error_type = "invalid_request"


class PayloadTooLarge(RagwayError):
    status = 413
    type_ = "invalid_request_error"
    default_code = "payload_too_large"
    error_type = "payload_too_large"


class UpstreamError(RagwayError):
    """A worker failed us. Subclasses say how; `retryable` says whether another worker may help."""

    type_ = "server_error"
    retryable: ClassVar[bool] = False


class UpstreamUnavailable(UpstreamError):
    status = 503
    default_code = "upstream_unavailable"
    error_type = "upstream_unavailable"
    retryable = True


class UpstreamBadResponse(UpstreamError):
    status = 502
    default_code = "bad_upstream_response"
    error_type = "upstream_bad_response"
    # Only ever raised before the first byte reaches the client (after it, failures go
    # in-band), so another worker may answer instead.
    retryable = True


class UpstreamConnectionLost(UpstreamBadResponse):
    """The worker closed the connection under the request: usually a kept-alive connection it
    had already timed out, sometimes a worker that died."""

    error_type = "upstream_connection_lost"


class UpstreamTimeout(UpstreamError):
    status = 504
    default_code = "upstream_timeout"
    error_type = "upstream_timeout"


class UpstreamStatus(UpstreamError):
    """The worker answered with an error status: relayed to the client unchanged."""

    error_type = "upstream_status"

    def __init__(self, status: int, content: bytes, content_type: str | None):
        super().__init__(f"upstream answered {status}")
        self.upstream_status = status
        self.content = content
        self.content_type = content_type or "application/json"


class ClientDisconnected(RagwayError):
    """The client went away before the answer was ready. 499, as nginx logs it; nobody reads
    the body, but metrics and logs see what happened."""

    status = 499
    default_code = "client_closed_request"
    error_type = "client_disconnected"


class KnowledgeBaseNotFound(RagwayError):
    status = 404
    type_ = "invalid_request_error"
    default_code = "knowledge_base_not_found"
    error_type = "not_found"

    def __init__(self, name: str, *, param: str | None = "knowledge_base"):
        super().__init__(f"The knowledge base `{name}` does not exist.", param=param)


class KnowledgeBaseExists(RagwayError):
    status = 409
    type_ = "invalid_request_error"
    default_code = "knowledge_base_exists"
    error_type = "conflict"

    def __init__(self, name: str):
        super().__init__(f"The knowledge base `{name}` already exists.", param="name")


class DocumentNotFound(RagwayError):
    status = 404
    type_ = "invalid_request_error"
    default_code = "document_not_found"
    error_type = "not_found"

    def __init__(self, knowledge_base: str, document_id: str):
        super().__init__(
            f"The knowledge base `{knowledge_base}` has no document `{document_id}`.",
            param="document_id",
        )


class VectorStoreUnavailable(RagwayError):
    """Chroma failed or cannot be reached."""

    status = 503
    type_ = "server_error"
    default_code = "vector_store_unavailable"
    error_type = "vector_store_unavailable"


class RetrievalUnavailable(RagwayError):
    """Retrieval failed for a knowledge base that fails closed."""

    status = 503
    type_ = "server_error"
    default_code = "retrieval_unavailable"
    error_type = "retrieval_unavailable"


class ShuttingDown(RagwayError):
    """The gateway is draining (SIGTERM): no new work, and streams cut when the grace ends."""

    status = 503
    type_ = "server_error"
    default_code = "server_shutting_down"
    error_type = "shutting_down"


class ResponseNotFound(RagwayError):
    """A stored response that does not exist, expired, was deleted, or is another tenant's."""

    status = 404
    type_ = "invalid_request_error"
    default_code = "response_not_found"
    error_type = "not_found"

    def __init__(self, response_id: str, *, param: str | None = None):
        super().__init__(f"Response with id '{response_id}' not found.", param=param)


class ResponseStoreUnavailable(RagwayError):
    """The store of responses (Redis) failed or did not answer in time."""

    status = 503
    type_ = "server_error"
    default_code = "response_store_unavailable"
    error_type = "response_store_unavailable"


class AuthenticationFailed(RagwayError):
    """No key, a malformed Authorization header, or a key the key file does not hold."""

    status = 401
    type_ = "invalid_request_error"
    default_code = "invalid_api_key"
    error_type = "invalid_api_key"

    def __init__(self, message: str):
        super().__init__(message)
        self.headers = {"www-authenticate": "Bearer"}


class PermissionDenied(RagwayError):
    status = 403
    type_ = "invalid_request_error"
    default_code = "permission_denied"
    error_type = "permission_denied"


class RateLimited(RagwayError):
    status = 429
    type_ = "requests"
    default_code = "rate_limit_exceeded"
    error_type = "rate_limited"
    # Which limit: rpm, tpm, tokens_per_day or concurrency (a bounded metrics label).
    reason: str = "rpm"


class QuotaExceeded(RateLimited):
    type_ = "insufficient_quota"
    default_code = "insufficient_quota"
    error_type = "quota_exceeded"


class LimitsUnavailable(RagwayError):
    """Rate limits live in Redis, Redis failed, and the limits fail closed."""

    status = 503
    type_ = "server_error"
    default_code = "rate_limits_unavailable"
    error_type = "rate_limits_unavailable"


class RequestDropped(RagwayError):
    """Flow control refused a request: its priority band was full, it waited queued past the
    band's TTL, or a higher band's request displaced it. The reason goes out in a header and
    is the `reason` label of `ragway_flow_rejected_total`."""

    status = 429
    type_ = "requests"
    default_code = "request_dropped"
    error_type = "request_dropped"

    def __init__(self, message: str, reason: str, retry_after: int = 1):
        super().__init__(message)
        self.reason = reason
        self.headers = {"retry-after": str(retry_after), DROPPED_REASON_HEADER: reason}


# Why flow control refused a request (429) or found no worker for it (503).
DROPPED_REASON_HEADER = "x-ragway-request-dropped-reason"
