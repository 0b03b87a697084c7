"""The RAG benchmark's report: its `## RAG` section of benchmarks/README.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "## RAG",
        "",
        "```bash",
        ".venv/bin/python -m benchmarks rag " + _flags(results.get("parameters", {})),
        "```",
        "",
        "The method is in `benchmarks/rag_bench.py`'s docstring. "
        f"Run {results['when']} on {results['machine']}.",
        "",
        "| chunks in the knowledge base | retrieval p50 | retrieval p99 | queries |",
        "|---|---|---|---|",
    ]
    for row in results["retrieval"]:
        lines.append(
            f"| {row['chunks']:,} | {row['p50_ms']} ms | {row['p99_ms']} ms | {row['queries']} |"
        )
    ing, tt = results["ingest"], results["ttft"]
    lines += [
        "",
        f"Ingest through the gateway: {ing['documents']} documents, {ing['chunks']} chunks in "
        f"{ing['seconds']} s: **{ing['chunks_per_s']} chunks/s**, "
        f"**{ing['ratio_to_in_process']}x** in-process `SentenceTransformer.encode` with torch "
        f"on the worker's core(s) ({ing['in_process_chunks_per_s']} chunks/s; target >= 0.8x). "
        f"The embedding worker alone (the same chunks posted to it directly) does "
        f"{ing['worker_alone_chunks_per_s']} chunks/s.",
        "",
        f"TTFT with RAG over {results['ttft_chunks']:,} chunks against the same chat without RAG "
        f"({tt['chats']} of each, alternating):",
        "",
        "| | TTFT p50 | TTFT p99 |",
        "|---|---|---|",
        f"| without RAG | {tt['plain_p50_ms']} ms | {tt['plain_p99_ms']} ms |",
        f"| with RAG | {tt['rag_p50_ms']} ms | {tt['rag_p99_ms']} ms |",
        f"| **added by RAG** | **{tt['added_p50_ms']} ms** (target ≤ 20 ms) | "
        f"{tt['added_p99_ms']} ms |",
        "",
        f"Of the added time, embedding the query on the worker alone takes {tt['embedding_p50_ms']}"
        " ms at p50 (the same questions, posted to the worker directly); the rest, about "
        f"{round(tt['added_p50_ms'] - tt['embedding_p50_ms'], 1)} ms, is the vector search (the "
        "retrieval p50 above), counting the prompt's and the passages' tokens on the chat "
        "worker, and the rewrite.",
        "",
        *_under_ingest(results),
    ]
    return "\n".join(lines)


def _under_ingest(results: dict[str, Any]) -> list[str]:
    under = results.get("under_ingest")
    if not under:
        return []
    idle, busy = under["idle"], under["under_ingest"]
    load = results.get("load_average")
    loaded = f" Load average at the end: {load[0]:.1f} on 2 cores." if load else ""
    return [
        f"A RAG chat's query embedding (one input, `x-ragway-priority: interactive`, posted "
        f"to the worker as the gateway posts it), one at a time, idle and while "
        f"{under['documents']} documents ({under['chunks']} chunks) are ingested through the "
        f"gateway, four in flight:",
        "",
        "| | rounds | query embedding p50 | p99 | RAG TTFT p50 | added by RAG p50 |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} | {f['rounds']} | {f['embedding_p50_ms']} ms | {f['embedding_p99_ms']} ms"
            f" | {f['rag_ttft_p50_ms']} ms | {f['added_ttft_p50_ms']} ms |"
            for name, f in (("idle", idle), ("under ingest", busy))
        ),
        "",
        f"**Query embedding p50 under ingest ÷ idle: {under['embedding_ratio']}x** "
        f"(target ≤ 2x).{loaded}",
        "",
    ]


def _flags(parameters: dict[str, Any]) -> str:
    """The options the run was given that shape its numbers, as a command line."""
    keys = ("chats", "documents", "load_documents", "embedding_threads", "model_cpus")
    return " ".join(
        f"--{key.replace('_', '-')} {parameters[key]}" for key in keys if key in parameters
    )


def write_section(readme: Path, section: str) -> None:
    """Replace (or append) the `## RAG` section, leaving the other sections alone."""
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    start = text.find("\n## RAG\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[: start + 1] + section + (text[end:] if end >= 0 else "")
    readme.write_text(text)
