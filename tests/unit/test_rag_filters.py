"""`where` filters: what Chroma accepts passes (normalised), anything else is a FilterError."""

from __future__ import annotations

from typing import Any

import pytest

from server.rag.filters import FilterError, normalize_where


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, None),
        ({}, None),
        ({"source": "faq.md"}, {"source": "faq.md"}),
        ({"position": {"$gte": 2}}, {"position": {"$gte": 2}}),
        ({"lang": {"$in": ["en", "de"]}}, {"lang": {"$in": ["en", "de"]}}),
        ({"a": 1, "b": True}, {"$and": [{"a": 1}, {"b": True}]}),
        ({"$or": [{"a": 1}]}, {"a": 1}),
        (
            {"$or": [{"a": 1}, {"b": {"$ne": "x"}}]},
            {"$or": [{"a": 1}, {"b": {"$ne": "x"}}]},
        ),
    ],
)
def test_valid_filters_are_normalised(given: Any, expected: Any) -> None:
    assert normalize_where(given) == expected


@pytest.mark.parametrize(
    ("given", "where"),
    [
        ("source", "non-empty object"),
        ([{"a": 1}], "non-empty object"),
        ({"a": None}, "filter.a"),
        ({"a": [1, 2]}, "filter.a"),
        ({"a": {"$gt": "x"}}, "expected a number"),
        ({"a": {"$gt": True}}, "expected a number"),
        ({"a": {"$in": []}}, "one type"),
        ({"a": {"$in": [1, "x"]}}, "one type"),
        ({"a": {"$in": [1, 2.5]}}, "one type"),
        ({"a": {"$regex": "x"}}, "unknown operator"),
        ({"a": {"$eq": 1, "$ne": 2}}, "one operator"),
        ({"$and": []}, "non-empty list"),
        ({"$and": {"a": 1}}, "non-empty list"),
        ({"$not": {"a": 1}}, "unknown operator"),
        ({"$and": [{"a": 1}, "b"]}, "filter.$and[1]"),
    ],
)
def test_malformed_filters_are_refused(given: Any, where: str) -> None:
    with pytest.raises(FilterError, match=where.replace("$", r"\$").replace("[", r"\[")):
        normalize_where(given)


def test_deep_nesting_is_refused() -> None:
    deep: dict[str, Any] = {"a": 1}
    for _ in range(10):
        deep = {"$and": [deep, {"b": 2}]}
    with pytest.raises(FilterError, match="nest"):
        normalize_where(deep)


@pytest.mark.parametrize(
    "given",
    [{"k": "x" * 300}, {"k": {"$ne": "é" * 200}}, {"k": {"$nin": ["a", "x" * 300]}}],
    ids=["eq", "ne, multi-byte", "nin"],
)
def test_values_too_long_to_be_in_chunks_are_refused(given: Any) -> None:
    # limits.chunk_metadata_value_bytes: longer strings are kept per document, not in chunks.
    with pytest.raises(FilterError, match="chunk_metadata_value_bytes"):
        normalize_where(given, max_value_bytes=256)
    assert normalize_where(given, max_value_bytes=1000) is not None


def test_document_level_keys_cannot_be_filtered_on() -> None:
    with pytest.raises(FilterError, match="no ':'"):
        normalize_where({"document:big": "x"})
