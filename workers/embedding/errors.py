"""The embedding worker's own failures, as leaves of ragway's one error tree (`server.errors`)."""

from __future__ import annotations

from server.errors import RagwayError


class QueueFull(RagwayError):
    """Too many inputs already wait for the model: shed load rather than queue without limit."""

    status = 503
    type_ = "server_error"
    default_code = "queue_full"
    error_type = "overloaded"


class WorkerShuttingDown(RagwayError):
    status = 503
    type_ = "server_error"
    default_code = "shutting_down"
    error_type = "shutting_down"


class EncoderFailed(RagwayError):
    """The forward pass that held this request's inputs raised."""

    status = 500
    type_ = "server_error"
    default_code = "encoder_error"
    error_type = "encoder_error"
