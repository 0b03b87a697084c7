"""The embedding worker against in-process `SentenceTransformer.encode` (torch), in one run.

- Throughput: one sentence per request at concurrency 32, to the worker directly and through
  ragway, against in-process `SentenceTransformer.encode(sentences, batch_size=32)` over the
  same sentences (it sorts them by length first), in rotating order.
- Latency: one short query at a time (nothing else running in the benchmark), directly and
  through ragway, interleaved, with `encoding_format: "base64"` (what the OpenAI Python SDK
  sends unless told otherwise) and with `"float"` (what a client that names no format gets);
  p50 and p99.

Pinning (taskset): the worker and the in-process encode run on the same core(s)
(`--model-cpus`, default core 1) with the same intra-op thread count (`--threads`), so the
ratio compares runtimes and batching, not core counts; the gateway and the load generator share
the other core (`--client-cpus`, default core 0). The worker runs its default backend (ONNX
Runtime on the CPU) unless `--backend torch`.

    python -m benchmarks embeddings --rounds 2 --duration 15

With `--threads 2 --model-cpus 0,1 --client-cpus 0,1` both sides get both cores and two
threads; the worker then shares them with the gateway and the load generator (the in-process
encode runs alone), which counts against the worker, never for it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from benchmarks import scenarios, targets
from benchmarks.common import percentile
from benchmarks.overhead import RESULTS
from benchmarks.procs import Proc, pin_self, running, start, wait_ready
from benchmarks.real_workers import phase, phase_table, ratios, rounds, write
from benchmarks.stats import Phase
from ragway import launch, weights
from ragway.stack import free_port

MODEL = "all-minilm-l6-v2"


def cpu_set(cpus: str) -> set[int]:
    return {int(c) for part in cpus.split(",") for c in _span(part)}


def _span(part: str) -> range:
    low, _, high = part.partition("-")
    return range(int(low), int(high or low) + 1)


def encode_rate(texts: list[str], cpus: str, threads: int) -> Callable[[], Phase]:
    import torch  # heavy: only for this benchmark
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(weights.embedding_model_dir()), device="cpu")

    def run() -> Phase:
        client_cpus = os.sched_getaffinity(0)
        pin_self(cpu_set(cpus))  # on the worker's core(s) while it runs
        try:
            model.encode(texts[:64], batch_size=32)
            began = time.perf_counter()
            model.encode(texts, batch_size=32)
            took = time.perf_counter() - began
        finally:
            os.sched_setaffinity(0, client_cpus)
        return {"req_s": len(texts) / took, "tokens_s": 0.0, "e2e_p50": took, "errors": 0}

    return run


# The OpenAI Python SDK's default first: the headline figure.
FORMATS = ("base64", "float")


def query_latency(urls: dict[str, str], queries: int) -> dict[str, dict[str, float]]:
    """One short query at a time to each URL in each format, in turn; p50/p99 in ms after a
    warm-up, keyed `<url name>` for base64 and `<url name> float` for floats."""
    keys = {(name, f): name if f == FORMATS[0] else f"{name} {f}" for name in urls for f in FORMATS}
    took: dict[str, list[float]] = {key: [] for key in keys.values()}
    clients = {name: httpx.Client(base_url=url, timeout=30) for name, url in urls.items()}
    try:
        for i in range(queries + 20):
            text = f"How do I reset the router after update {i}?"
            for (name, fmt), key in keys.items():
                body = {"model": MODEL, "input": text, "encoding_format": fmt}
                began = time.perf_counter()
                clients[name].post("/embeddings", json=body).raise_for_status()
                if i >= 20:
                    took[key].append(time.perf_counter() - began)
    finally:
        for client in clients.values():
            client.close()
    return {
        name: {"p50_ms": percentile(v, 50) * 1000, "p99_ms": percentile(v, 99) * 1000}
        for name, v in took.items()
    }


def start_worker(args: argparse.Namespace, procs: list[Proc]) -> str:
    port = free_port()
    spec = launch.embedding_spec(weights.embedding_model_dir(), MODEL, host="127.0.0.1", port=port)
    env = {"RAGWAY_EMBED_THREADS": str(args.threads)}
    if args.backend:
        env["RAGWAY_EMBED_BACKEND"] = args.backend
    log_dir = args.out / "raw" / "embeddings"
    procs.append(
        start("embedding-worker", spec.argv, log_dir=log_dir, cpus=args.model_cpus, env=env)
    )
    wait_ready(procs[-1], spec.ready_url, 600)
    return f"http://127.0.0.1:{port}"


def report(
    args: argparse.Namespace,
    sentences: int,
    phases: list[Phase],
    latency: dict[str, dict[str, float]],
    ratio: tuple[tuple[float, float, float], tuple[float, float, float]],
) -> str:
    direct, through = ratio
    backend = args.backend or "onnx (default)"
    return "\n\n".join(
        [
            f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; all-MiniLM-L6-v2, "
            f"worker backend {backend}, {args.threads} intra-op thread(s); worker and in-process "
            f"encode on core(s) {args.model_cpus}, gateway and load generator on "
            f"{args.client_cpus}; {sentences} distinct sentences, one per request at "
            f"concurrency {args.concurrency}; in-process: "
            "`SentenceTransformer.encode(sentences, batch_size=32)` with torch.",
            f"**worker direct ÷ in-process: {direct[0]:.3f}** "
            f"(rounds: {direct[1]:.3f}–{direct[2]:.3f}); "
            f"**through ragway ÷ in-process: {through[0]:.3f}** "
            f"(rounds: {through[1]:.3f}–{through[2]:.3f})",
            f"One short query at a time ({args.queries} each, interleaved), base64 as the "
            f"OpenAI SDK asks: **through ragway p50 {latency['ragway']['p50_ms']:.2f} ms** "
            f"(p99 {latency['ragway']['p99_ms']:.2f} ms); "
            f"direct p50 {latency['direct']['p50_ms']:.2f} ms "
            f"(p99 {latency['direct']['p99_ms']:.2f} ms). As floats: through ragway p50 "
            f"{latency['ragway float']['p50_ms']:.2f} ms, direct "
            f"{latency['direct float']['p50_ms']:.2f} ms. Load average at the end: "
            f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs.",
            phase_table(phases, "req_s", "sentences/s"),
        ]
    )


def embeddings(args: argparse.Namespace) -> None:
    texts = scenarios.sentences(args.sentences, seed=1)
    pin_self(cpu_set(args.client_cpus))
    procs: list[Proc] = []
    with running(procs):
        worker = start_worker(args, procs)
        gateway = targets.ragway(
            args.out / "raw" / "embeddings", worker, args.client_cpus, kinds=("embedding",)
        )
        procs.append(gateway)
        latency = query_latency(
            {"direct": worker + "/v1", "ragway": gateway.base_url}, args.queries
        )
        load = scenarios.embeddings(MODEL, texts)
        runs = {
            "in-process encode": encode_rate(texts, args.model_cpus, args.threads),
            "direct": lambda: asyncio.run(phase(worker + "/v1", load, args.concurrency, args)),
            "ragway": lambda: asyncio.run(phase(gateway.base_url, load, args.concurrency, args)),
        }
        phases = rounds(runs, args.rounds)
    direct = ratios(phases, "req_s", "direct", "in-process encode")
    through = ratios(phases, "req_s", "ragway", "in-process encode")
    text = report(args, len(texts), phases, latency, (direct, through))
    results = {
        "benchmark": "embeddings",
        "parameters": vars(args),
        "ratio_direct": direct,
        "ratio_ragway": through,
        "query_latency": latency,
        "load_average": os.getloadavg(),
        "phases": phases,
    }
    write("embeddings", results, text, args.out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks embeddings",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sentences", type=int, default=4096)
    parser.add_argument("--queries", type=int, default=300, help="for the latency run")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads, both sides")
    parser.add_argument("--backend", choices=["onnx", "torch"], help="the worker's backend")
    parser.add_argument("--model-cpus", default="1", help="worker and in-process encode")
    parser.add_argument("--client-cpus", default="0", help="gateway and load generator")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per phase")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    embeddings(parser.parse_args(argv))
