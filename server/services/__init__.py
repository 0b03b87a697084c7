"""Orchestration: from a parsed request to a worker and back."""
