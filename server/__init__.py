"""ragway's HTTP edge: the OpenAI-compatible gateway."""
