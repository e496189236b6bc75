"""Adaptive concurrency (src/labpipe/llm/limit.py) vs fixed limits, side by side on one server.

Three scenarios, each run in a bounded time (`--requests`, `--timeout`):

- `transformers`: `transformers serve` (default settings, CPU) with the tiny random model: completed
  requests and amplification (requests the server received / requests completed) with the adaptive limit
  (ceiling 32) vs a fixed 32. The client's timeout is shortened (`--timeout`, default 20 s instead of
  120 s) so that the run takes minutes, not hours; the overload is the same in kind.
- `llamacpp`: llama.cpp's server (xllamacpp wheel) with 4 slots: throughput (completed requests/s) with
  the adaptive limit vs the best of a sweep of fixed limits (1, 2, 4, 8, 16, 32).
- `fake`: our fake OpenAI server serving 64 at a time with a fixed latency (0.2 s), the rest queued: the
  same comparison, sweep 16..128. (A fake on purpose: a server of that capacity with a fixed latency.)

    python benchmarks/bench_adaptive.py [transformers|llamacpp|fake ...] [--requests 64] [--timeout 20]

Needs: pip install 'transformers[serving]' (transformers), xllamacpp gguf (llamacpp).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import _checkout  # noqa: F401  (tests.support from a checkout)

from labpipe.llm.client import make_client
from labpipe.llm.types import ChatRequest, ModelSpec
from tests.support.servers import RealServer, free_port


def chats(n: int, max_tokens: int) -> list[ChatRequest]:
    return [
        ChatRequest(
            messages=[{"role": "user", "content": f"Write question number {i} about tides."}],
            request_id=f"r{i}",
            max_tokens=max_tokens,
        )
        for i in range(n)
    ]


def run(
    url: str, model: str, n: int, max_tokens: int, concurrency: int, adaptive: bool, timeout: float
) -> dict:
    spec = ModelSpec(
        url,
        model=model,
        concurrency=concurrency,
        timeout_s=timeout,
        max_retries=2,
        final_pass=False,
        adaptive_concurrency=adaptive,
    )
    client = make_client(spec)
    client.model_name  # noqa: B018 - the model check, before the clock starts
    began = time.perf_counter()
    results = client.complete(chats(n, max_tokens))
    span = time.perf_counter() - began
    stats = client.stats
    done = sum(r.ok for r in results)
    row = {
        "limit": f"adaptive<= {concurrency}" if adaptive else f"fixed {concurrency}",
        "completed": done,
        "sent": stats.requests,
        "amplification": round(stats.requests / max(done, 1), 2),
        "timeouts": stats.errors.get("timeout", 0),
        "span_s": round(span, 1),
        "throughput_rps": round(done / span, 2),
    }
    if client.limit is not None:
        row["adaptive"] = client.limit.describe()
    print(json.dumps(row), flush=True)
    return row


def transformers(args, work: Path) -> dict:
    from labpipe.models.tiny import build_tiny_model

    model = build_tiny_model(work / "tiny")
    port = free_port()
    cmd = [
        sys.executable,
        "-c",
        "from transformers.cli.transformers import main; main()",
        "serve",
        str(model),
    ]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(work / "hf")}
    url = f"http://127.0.0.1:{port}/v1"
    rows = {}
    for adaptive in (False, True):  # a fresh server each, so abandoned work does not carry over
        server = RealServer("transformers serve", cmd, port, work / "serve.log", "/health", env=env).start(300)
        try:
            rows["adaptive" if adaptive else "fixed_32"] = run(
                url, str(model), args.requests, args.max_tokens, 32, adaptive, args.timeout
            )
        finally:
            server.stop()
    return rows


def sweep(url: str, model: str, args, fixed: list[int], ceiling: int, timeout: float = 120) -> dict:
    """After a discarded warm-up, adaptive first and last (a busier machine favours neither), fixed between."""
    run(
        url, model, 32, args.max_tokens, 4, False, timeout
    )  # warm-up (the server's first requests), discarded
    rows = {"adaptive_first": run(url, model, args.requests, args.max_tokens, ceiling, True, timeout)}
    rows |= {f"fixed_{c}": run(url, model, args.requests, args.max_tokens, c, False, timeout) for c in fixed}
    rows["adaptive_last"] = run(url, model, args.requests, args.max_tokens, ceiling, True, timeout)
    best = max(r["throughput_rps"] for k, r in rows.items() if k.startswith("fixed"))
    ratios = [round(rows[k]["throughput_rps"] / best, 2) for k in ("adaptive_first", "adaptive_last")]
    rows["adaptive_vs_best_fixed"] = ratios
    print(json.dumps({"adaptive_vs_best_fixed (first, last)": ratios}), flush=True)
    return rows


def llamacpp(args, work: Path) -> dict:
    from labpipe.models.gguf_export import export_gguf
    from labpipe.models.tiny import build_tiny_model

    gguf = export_gguf(build_tiny_model(work / "tiny"), work / "tiny.gguf")
    port = free_port()
    cmd = [sys.executable, "-m", "labpipe.models.llamacpp_server", "--model", str(gguf), "--port", str(port)]
    cmd += ["--ctx", "2048", "--parallel", "4", "--alias", "tiny"]
    server = RealServer("llama.cpp", cmd, port, work / "llamacpp.log", "/health").start(300)
    try:
        return sweep(server.base_url, "tiny", args, [1, 2, 4, 8, 16, 32], 32)
    finally:
        server.stop()


def fake(args, work: Path) -> dict:
    from tests.support.fake_openai import FakeOpenAIServer

    with FakeOpenAIServer(latency_s=0.2, slots=64) as server:
        return sweep(server.base_url, server.model, args, [16, 32, 64, 128], 128)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", default=["transformers", "llamacpp", "fake"])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument(
        "--timeout", type=float, default=20.0, help="client timeout against transformers serve"
    )
    args = parser.parse_args()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.scenarios:
            out[name] = {"transformers": transformers, "llamacpp": llamacpp, "fake": fake}[name](
                args, Path(tmp)
            )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
