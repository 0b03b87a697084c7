"""`where` metadata filters: checked and normalised before they reach Chroma.

Chroma validates filters too, but only when a query runs, with messages about its own call
names, and it refuses the implicit AND of a many-key object (`{"a": 1, "b": 2}`) that MongoDB,
whose grammar it borrows, accepts. Checking here gives a 400 that names the bad part, for the
knowledge-base query API, for `rag.filter` on a chat request, and for virtual models at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_LOGICAL = frozenset({"$and", "$or"})
_EQUALITY = frozenset({"$eq", "$ne"})
_ORDER = frozenset({"$gt", "$gte", "$lt", "$lte"})
_MEMBERSHIP = frozenset({"$in", "$nin"})
_MAX_DEPTH = 8
# Defaults of limits.max_filter_values and limits.max_filter_clauses (server.settings).
MAX_FILTER_VALUES = 256
MAX_FILTER_CLAUSES = 64
# Default of limits.chunk_metadata_value_bytes: longer strings are kept once per document, not
# in chunks (server/rag/records.py), so no filter can match them.
MAX_FILTER_VALUE_BYTES = 256


class FilterError(ValueError):
    """The filter is malformed; the message says where."""


@dataclass
class _Budget:
    max_values: int
    max_clauses: int
    max_value_bytes: int = MAX_FILTER_VALUE_BYTES
    clauses: int = 0

    def ensure(self, path: str, more: int) -> None:
        """Refuses `more` clauses (before visiting any of them) if they would not fit."""
        if self.clauses + more > self.max_clauses:
            raise FilterError(
                f"{path}: a filter may have at most {self.max_clauses} clauses "
                "(limits.max_filter_clauses)"
            )


def normalize_where(
    where: Any,
    *,
    max_values: int = MAX_FILTER_VALUES,
    max_clauses: int = MAX_FILTER_CLAUSES,
    max_value_bytes: int = MAX_FILTER_VALUE_BYTES,
) -> dict[str, Any] | None:
    """The filter in Chroma's grammar, or None when there is nothing to filter on."""
    if where is None or where == {}:
        return None
    return _clause(where, "filter", 0, _Budget(max_values, max_clauses, max_value_bytes))


def _clause(node: Any, path: str, depth: int, budget: _Budget) -> dict[str, Any]:
    if depth > _MAX_DEPTH:
        raise FilterError(f"{path}: filters nest at most {_MAX_DEPTH} levels deep")
    if not isinstance(node, dict) or not node:
        raise FilterError(f"{path}: expected a non-empty object")
    budget.ensure(path, 1)
    budget.clauses += 1
    if len(node) > 1:  # several keys mean all of them, as in MongoDB; Chroma wants it spelled out
        budget.ensure(path, len(node))
        return {"$and": [_clause({k: v}, path, depth + 1, budget) for k, v in node.items()]}
    ((key, value),) = node.items()
    if not isinstance(key, str) or not key:
        raise FilterError(f"{path}: keys must be non-empty strings")
    if key in _LOGICAL:
        if not isinstance(value, list) or not value:
            raise FilterError(f"{path}.{key}: expected a non-empty list of filters")
        budget.ensure(f"{path}.{key}", len(value))
        parts = [_clause(v, f"{path}.{key}[{i}]", depth + 1, budget) for i, v in enumerate(value)]
        # Chroma insists on two or more; one clause means itself.
        return parts[0] if len(parts) == 1 else {key: parts}
    if key.startswith("$"):
        raise FilterError(f"{path}: unknown operator {key!r} (use $and or $or, or a field name)")
    if ":" in key:  # ragway's own document-level keys; metadata keys have no ':'
        raise FilterError(f"{path}: {key!r}: metadata keys have no ':'")
    _check_sizes(value, f"{path}.{key}", budget.max_value_bytes)
    return {key: _condition(value, f"{path}.{key}", budget.max_values)}


def _check_sizes(value: Any, path: str, limit: int) -> None:
    """A string longer than `limit` UTF-8 bytes is never in a chunk: refuse rather than match
    nothing. Only strings that could be that long are measured."""
    values = value.values() if isinstance(value, dict) else [value]
    for one in values:
        for item in one if isinstance(one, list) else [one]:
            if isinstance(item, str) and len(item) > limit // 4 and len(item.encode()) > limit:
                raise FilterError(
                    f"{path}: values over {limit} bytes are kept once per document, not in "
                    "chunks, and cannot be filtered on (limits.chunk_metadata_value_bytes)"
                )


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float)  # bool is an int


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _condition(value: Any, path: str, max_values: int) -> Any:
    if _is_scalar(value):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        raise FilterError(
            f"{path}: expected a string, number or boolean, or one operator such as {{'$gt': 3}}"
        )
    ((op, operand),) = value.items()
    if op in _MEMBERSHIP and isinstance(operand, list) and len(operand) > max_values:
        raise FilterError(
            f"{path}.{op}: at most {max_values} values are allowed (limits.max_filter_values)"
        )
    if op in _EQUALITY and _is_scalar(operand):
        return value
    if op in _ORDER and _is_number(operand):
        return value
    if op in _MEMBERSHIP and _is_uniform_list(operand):
        return value
    if op in _EQUALITY | _ORDER | _MEMBERSHIP:
        raise FilterError(f"{path}.{op}: {_expected(op)}")
    raise FilterError(f"{path}: unknown operator {op!r}")


def _is_uniform_list(operand: Any) -> bool:
    if not isinstance(operand, list) or not operand or not all(map(_is_scalar, operand)):
        return False
    return len({type(v) for v in operand}) == 1  # Chroma refuses [1, 2.5] too


def _expected(op: str) -> str:
    if op in _EQUALITY:
        return "expected a string, number or boolean"
    if op in _ORDER:
        return "expected a number"
    return "expected a non-empty list of values of one type"
