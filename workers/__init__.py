"""ragway's own worker processes (separate from the gateway)."""
