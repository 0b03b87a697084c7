"""Prefix-aware routing against round robin, on real vLLM workers, in one interleaved run.

Workload: multi-turn chats, each with its own long system prompt (the shared prefix) and a few
short user turns; every turn resends the whole conversation, as chat clients do. Two gateways
(`python -m server`) run side by side over the same workers, one per policy, and the phases
alternate (round robin, prefix aware, round robin, ...), each with fresh conversations, so both
policies see the same machine state. For each policy the report gives TTFT p50/p90 (time to the
first streamed token) and the workers' prefix-cache hit rate over its phases, from vLLM's own
`vllm:prefix_cache_hits_total` / `vllm:prefix_cache_queries_total`.

    python -m benchmarks.prefix_routing --workers http://127.0.0.1:8001,http://127.0.0.1:8003
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from benchmarks.common import percentile, vllm_counter, write_report
from ragway.stack import serve_gateway

POLICIES = ("round_robin", "prefix_aware")
WORDS = ("river", "stone", "amber", "lantern", "orchard", "meadow", "harbor", "violet",
         "summit", "ember", "cobalt", "willow")  # fmt: skip


@dataclass
class PolicyResult:
    policy: str
    ttft: list[float] = field(default_factory=list)
    hits: float = 0.0
    queries: float = 0.0
    errors: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else 0.0


def system_prompt(rng: random.Random, words: int) -> str:
    return "You are a helpful assistant. Reference notes: " + " ".join(
        rng.choice(WORDS) for _ in range(words)
    )


async def conversation(
    client: httpx.AsyncClient, model: str, system: str, turns: int, ttft: list[float]
) -> int:
    messages = [{"role": "system", "content": system}]
    errors = 0
    for turn in range(turns):
        messages.append({"role": "user", "content": f"Question {turn}: name one colour."})
        body = {"model": model, "messages": messages, "max_tokens": 8, "stream": True}
        started = time.perf_counter()
        first: float | None = None
        answer = []
        async with client.stream("POST", "/chat/completions", json=body) as response:
            if response.status_code != 200:
                errors += 1
                continue
            async for line in response.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                delta = json.loads(line[6:])["choices"]
                if delta and delta[0]["delta"].get("content"):
                    first = first or time.perf_counter() - started
                    answer.append(delta[0]["delta"]["content"])
        if first is not None:
            ttft.append(first)
        messages.append({"role": "assistant", "content": "".join(answer)})
    return errors


async def phase(base_url: str, model: str, prompts: Sequence[str], turns: int,
                concurrency: int, result: PolicyResult, bar: tqdm[Any]) -> None:  # fmt: skip
    queue = list(prompts)

    async def runner(client: httpx.AsyncClient) -> None:
        while queue:
            system = queue.pop()
            result.errors += await conversation(client, model, system, turns, result.ttft)
            bar.update(1)

    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        await asyncio.gather(*(runner(client) for _ in range(concurrency)))


@contextmanager
def gateways(workers: Sequence[str], directory: Path) -> Iterator[dict[str, str]]:
    """One gateway per policy, over the same workers."""
    with ExitStack() as stack:
        urls = {}
        for policy in POLICIES:
            config: dict[str, object] = {
                "workers": [{"name": f"w{i}", "url": u} for i, u in enumerate(workers)],
                "routing": {"chat_policy": policy},
                "health": {"interval": 1.0},
            }
            urls[policy] = stack.enter_context(serve_gateway(config, directory, name=policy))
        yield urls


def cache_counters(workers: Sequence[str]) -> tuple[float, float]:
    """Prefix-cache hits and queries, summed over the workers."""
    hits = queries = 0.0
    for worker in workers:
        found = vllm_counter(worker, "prefix_cache")
        hits += found.get("vllm:prefix_cache_hits_total", 0.0)
        queries += found.get("vllm:prefix_cache_queries_total", 0.0)
    return hits, queries


async def run(args: argparse.Namespace) -> dict[str, PolicyResult]:
    rng = random.Random(args.seed)
    workers = args.workers.split(",")
    results = {policy: PolicyResult(policy) for policy in POLICIES}
    directory = Path(args.out)
    total = args.rounds * len(POLICIES) * args.conversations
    with tqdm(total=total, desc="conversations") as bar, gateways(workers, directory) as urls:
        for _ in range(args.rounds):
            for policy in POLICIES:
                result = results[policy]
                prompts = [system_prompt(rng, args.prompt_words) for _ in range(args.conversations)]
                hits, queries = cache_counters(workers)
                await phase(urls[policy], args.model, prompts, args.turns, args.concurrency,
                            result, bar)  # fmt: skip
                hits_after, queries_after = cache_counters(workers)
                result.hits += hits_after - hits
                result.queries += queries_after - queries
    return results


def table(results: dict[str, PolicyResult]) -> str:
    rows = ["| policy | turns | TTFT p50 (s) | TTFT p90 (s) | prefix-cache hit rate | errors |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for r in results.values():
        rows.append(
            f"| {r.policy} | {len(r.ttft)} | {statistics.median(r.ttft):.3f} | "
            f"{percentile(r.ttft, 90):.3f} | {r.hit_rate:.1%} | {r.errors} |"
        )
    return "\n".join(rows)


def plot(results: dict[str, PolicyResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results.values():
        xs = sorted(r.ttft)
        ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))],
                label=f"{r.policy} (hit rate {r.hit_rate:.0%})")  # fmt: skip
    ax.set_xlabel("time to first token (s)")
    ax.set_ylabel("fraction of turns")
    ax.set_title("TTFT CDF: multi-turn chats with long system prompts, 2 vLLM CPU workers")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.prefix_routing")
    parser.add_argument("--workers", required=True, help="comma-separated vLLM worker URLs")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--conversations", type=int, default=12, help="per phase")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="phases per policy")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--prompt-words", type=int, default=900)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    results = asyncio.run(run(args))
    out = Path(args.out)
    plot(results, out / "prefix_routing_ttft.png")
    (out / "prefix_routing.json").write_text(
        json.dumps({p: {**asdict(r), "hit_rate": r.hit_rate} for p, r in results.items()}, indent=1)
    )
    write_report(out / "prefix_routing.md", table(results), vars(args))
    print(table(results))


if __name__ == "__main__":
    main()
