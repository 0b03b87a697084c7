"""Tenancy: API keys, the principal a request runs as, its scopes, and its limits."""
