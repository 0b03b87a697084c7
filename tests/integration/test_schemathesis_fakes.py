"""schemathesis over ragway's own OpenAPI (the knowledge-base API, with its request bodies)
and over the OpenAI routes (described here from the pydantic wire models: the routes are plain
Starlette routes outside the OpenAPI document), against a real gateway process in front of the
fake worker. Every generated request must answer below 500, within a timeout (no hangs)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from pydantic import BaseModel

from benchmarks import targets
from benchmarks.procs import Proc, running
from server.protocol.embeddings import EmbeddingRequest
from server.protocol.generation import ChatCompletionRequest, CompletionRequest

pytestmark = pytest.mark.stack

EXAMPLES = 200  # per operation with inputs (13 of the 16)
TIMEOUT = 15.0


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    run_dir: Path = tmp_path_factory.mktemp("fuzz")
    procs: list[Proc] = []
    with running(procs):
        worker = targets.fake_worker(run_dir, None, tokens=4, tokens_per_s=0, delay_ms=0)
        procs.append(worker)
        gateway = targets.ragway(
            run_dir, worker.base_url, None, rag={"data_dir": str(run_dir / "data")}
        )
        procs.append(gateway)
        yield gateway.base_url.removesuffix("/v1")


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


def _openai_operation(model: type[BaseModel]) -> dict[str, Any]:
    body = model.model_json_schema()
    return {
        "post": {
            "parameters": [
                {"name": "x-request-id", "in": "header", "schema": {"type": "string"}},
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _inline(body, body.get("$defs", {}))}},
            },
            "responses": {"200": {"description": "OK"}},
        }
    }


def api_schema(base_url: str) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(base_url + "/openapi.json", timeout=30).json()
    document["paths"].update(
        {
            "/v1/chat/completions": _openai_operation(ChatCompletionRequest),
            "/v1/completions": _openai_operation(CompletionRequest),
            "/v1/embeddings": _openai_operation(EmbeddingRequest),
        }
    )
    return document


def test_no_generated_request_gets_a_5xx_or_hangs(gateway: str) -> None:
    schema = schemathesis.openapi.from_dict(api_schema(gateway))
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 15
    counts: dict[str, int] = {}
    failures: list[str] = []
    started = time.perf_counter()
    for operation in operations:
        _fuzz(operation, gateway, counts, failures)
    took = time.perf_counter() - started
    total = sum(counts.values())
    print(f"schemathesis: {total} cases over {len(operations)} operations in {took:.0f} s")
    assert not failures, failures[:10]
    assert total >= 2000, counts


def _fuzz(operation: Any, gateway: str, counts: dict[str, int], failures: list[str]) -> None:
    name = f"{operation.method.upper()} {operation.path}"

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        counts[name] = counts.get(name, 0) + 1
        response = case.call(base_url=gateway, timeout=TIMEOUT)
        if response.status_code >= 500:
            failures.append(f"{name} -> {response.status_code}: {response.text[:300]}")

    run()
