"""`python -m benchmarks <name> [options]`: run one benchmark; `--help` after a name for its
options. Every benchmark writes its results under benchmarks/results/ (JSON, Markdown, PNG)."""

from __future__ import annotations

import importlib
import sys

# name -> (module, what it measures)
BENCHMARKS = {
    "overhead": (
        "benchmarks.overhead",
        "gateway overhead vs direct and peer gateways, over a fake worker",
    ),
    "soak": ("benchmarks.soak", "gateway memory and errors under a long mixed load"),
    "profile": ("benchmarks.profile", "py-spy profile of the gateway under load"),
    "inproc": ("benchmarks.inproc", "request-path CPU A/B, the app called in process"),
    "vllm": ("benchmarks.real_workers", "tokens/s through ragway vs direct, real vLLM worker"),
    "embeddings": (
        "benchmarks.embedding_bench",
        "embedding worker vs in-process SentenceTransformer.encode",
    ),
    "report": ("benchmarks.report", "re-render the overhead report from its JSON"),
    "prefix-routing": ("benchmarks.prefix_routing", "prefix-aware routing vs round robin"),
    "rag": ("benchmarks.rag_bench", "RAG: retrieval latency, ingest, added TTFT"),
    "attack": ("benchmarks.attack", "hostile requests against a running gateway (loopback)"),
    "flow": ("benchmarks.flow_bench", "flow control: interactive TTFT under a batch flood"),
    "fake-worker": ("benchmarks.fake_worker", "run the fake worker on its own"),
}


def usage() -> str:
    width = max(map(len, BENCHMARKS))
    lines = [f"  {name:<{width}}  {what}" for name, (_, what) in BENCHMARKS.items()]
    return "usage: python -m benchmarks <name> [options]\n\nbenchmarks:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help") or args[0] not in BENCHMARKS:
        print(usage())
        raise SystemExit(0 if not args or args[0] in ("-h", "--help") else 2)
    name, rest = args[0], args[1:]
    module = importlib.import_module(BENCHMARKS[name][0])
    if name == "vllm":
        module.main([name, *rest])
    else:
        module.main(rest)


if __name__ == "__main__":
    main()
