"""Choosing a worker for a request: pure domain logic, no web framework and no HTTP client."""
