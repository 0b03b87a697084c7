"""Pydantic wire models: only the fields ragway reads; everything else passes through."""
