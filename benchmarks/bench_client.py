"""Model-client throughput, each figure against its baseline measured side by side in this script.

1. OpenAI-compatible client vs the fake teacher (FakeOpenAIServer, a real HTTP server in a process of
   its own, or in this one with --in-process-server) with a fixed per-request latency: throughput at `--concurrency` against the ideal
   concurrency / latency, and the speed-up over the same client with concurrency 1 (run on
   `--sequential-requests` requests and extrapolated per request: 2,000 sequential requests would
   take 400 s).
2. In-process HF client on the tiny model: generated tokens/s batched (`--batch-size`) vs one prompt
   at a time, same prompts, greedy, plain and schema-constrained, torch on `--torch-threads` threads.

    python benchmarks/bench_client.py            # full run, ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import _checkout  # noqa: F401  (tests.support from a checkout)

from labpipe.llm.client import make_client
from labpipe.llm.types import ChatRequest, ModelSpec
from tests.support.fake_openai import FakeOpenAIServer

RATING = {
    "type": "object",
    "properties": {
        "rating": {"type": "integer", "minimum": 1, "maximum": 3},
        "rationale": {"type": "string"},
    },
    "required": ["rating", "rationale"],
}


def requests(n: int, **kw) -> list[ChatRequest]:
    return [
        ChatRequest(
            messages=[{"role": "user", "content": f"Write question {i} about topic {i % 37}."}],
            request_id=f"q{i}",
            **kw,
        )
        for i in range(n)
    ]


@contextmanager
def teacher(latency: float, in_process: bool):
    """The fake teacher's base URL: in this process, or (default) in a process of its own, like a real server."""
    if in_process:
        with FakeOpenAIServer(latency_s=latency) as server:
            yield server.base_url
        return
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_openai", "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def timed_http(url: str, n: int, concurrency: int) -> float:
    client = make_client(ModelSpec(url, model="fake-teacher", concurrency=concurrency))
    client.model_name  # noqa: B018 - the one-off endpoint probe stays out of the timing
    start = time.perf_counter()
    results = client.complete(requests(n))
    elapsed = time.perf_counter() - start
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    return elapsed


def bench_http(args: argparse.Namespace) -> None:
    with teacher(args.latency, args.in_process_server) as url:
        seq_s = timed_http(url, args.sequential_requests, 1)
        conc_s = timed_http(url, args.requests, args.concurrency)
    ideal = args.concurrency / args.latency
    rate = args.requests / conc_s
    seq_per_request = seq_s / args.sequential_requests
    where = "in this process" if args.in_process_server else "in its own process"
    print(f"HTTP fake teacher ({where}), latency {args.latency * 1000:.0f} ms, {args.requests} requests")
    print(
        f"  concurrency {args.concurrency}: {conc_s:.2f} s, {rate:.1f} req/s, ideal {ideal:.1f} req/s "
        f"-> {rate / ideal:.1%} of ideal"
    )
    print(
        f"  concurrency 1: {args.sequential_requests} requests in {seq_s:.2f} s "
        f"({1 / seq_per_request:.2f} req/s; extrapolated {seq_per_request * args.requests:.0f} s for {args.requests})"
    )
    print(f"  speed-up over sequential: {seq_per_request * args.requests / conc_s:.1f}x")


def timed_hf(model_dir: Path, batch_size: int, reqs: list[ChatRequest]) -> tuple[float, int, list[str]]:
    client = make_client(ModelSpec(str(model_dir), batch_size=batch_size))
    client.complete(reqs[:2])  # warm-up: first-call costs (and grammar compilation) out of the timing
    tokens_before = client.stats.completion_tokens
    start = time.perf_counter()
    results = client.complete(reqs)
    elapsed = time.perf_counter() - start
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    return elapsed, client.stats.completion_tokens - tokens_before, [r.text for r in results]


def bench_hf(args: argparse.Namespace) -> None:
    import torch

    from labpipe.models.tiny import build_tiny_model

    torch.set_num_threads(
        args.torch_threads
    )  # a ~100k-parameter model gains nothing from more; others' load hurts
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny")
        for label, reqs in (
            ("plain", requests(args.prompts, max_tokens=args.max_tokens)),
            ("schema", requests(args.prompts, max_tokens=args.max_tokens, schema=RATING)),
        ):
            single_s, single_tok, single_text = timed_hf(model_dir, 1, reqs)
            batch_s, batch_tok, batch_text = timed_hf(model_dir, args.batch_size, reqs)
            same = "identical" if single_text == batch_text else "DIFFERENT"
            print(f"In-process tiny model, {label}, {args.prompts} prompts, max_tokens {args.max_tokens}:")
            print(
                f"  one at a time: {single_tok} tokens in {single_s:.2f} s = {single_tok / single_s:.0f} tok/s"
            )
            print(
                f"  batch {args.batch_size}: {batch_tok} tokens in {batch_s:.2f} s = {batch_tok / batch_s:.0f} tok/s "
                f"-> {(batch_tok / batch_s) / (single_tok / single_s):.1f}x; outputs {same}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--sequential-requests", type=int, default=50)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--in-process-server", action="store_true", help="share this process (and its GIL)")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--skip-hf", action="store_true")
    args = parser.parse_args()
    bench_http(args)
    if not args.skip_hf:
        bench_hf(args)


if __name__ == "__main__":
    main()
