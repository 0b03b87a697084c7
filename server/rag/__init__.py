"""Retrieval-augmented generation: knowledge bases on Chroma, ingestion, retrieval and the pure
prompt-augmentation step."""
