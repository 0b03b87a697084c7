"""Why no worker could be chosen. The server maps these to HTTP errors."""

from __future__ import annotations


class NoRoute(Exception):
    """Base: no worker can take this request."""


class UnknownModel(NoRoute):
    def __init__(self, model: str):
        super().__init__(f"no worker serves model {model!r}")
        self.model = model


class NoHealthyWorker(NoRoute):
    def __init__(self, model: str):
        super().__init__(f"every worker serving model {model!r} is down")
        self.model = model
