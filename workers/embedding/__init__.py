"""ragway's embedding worker: an OpenAI-compatible `/v1/embeddings` over sentence-transformers.

It runs as its own process (`python -m workers.embedding`); the gateway reaches it over HTTP
like any other worker. Nothing here imports torch until the lifespan loads the real model.
"""
