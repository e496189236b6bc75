"""MT-Bench answer throughput on CPU: the server engine (llama.cpp's server from the `xllamacpp` wheel, on the
tiny model's GGUF export) vs in-process generate (transformers, batched), at the same concurrency, side by side.

Both answer the same questions (2 turns each) through labpipe's own path (`generate_answers` with the
engine's client); the same CPU threads for each (`--threads`: llama.cpp's threads, torch's intra-op threads),
`--concurrency` requests in flight (llama.cpp: that many slots; in-process: batches of that size). The server's
start (GGUF export + load) is timed apart from the answering. Runs alternate (hf, llamacpp, hf, llamacpp...)
so a load change on the shared machine hits both.

    python benchmarks/bench_eval_engine.py [--questions 16] [--max-new-tokens 64] [--concurrency 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from labpipe.evaluation.answers import generate_answers
from labpipe.evaluation.engines import EngineConfig, serve_model
from labpipe.evaluation.questions import load_questions
from labpipe.llm.client import make_client
from labpipe.models.tiny import build_tiny_model


def answer(engine: EngineConfig, model: Path, questions, args, work: Path) -> dict:
    start = time.perf_counter()
    with serve_model(
        str(model), engine, label="candidate", workdir=work, max_new_tokens=args.max_new_tokens
    ) as s:
        ready = time.perf_counter()
        client = make_client(s.spec(concurrency=args.concurrency, batch_size=args.concurrency, max_retries=1))
        try:
            t0 = time.perf_counter()
            answers = generate_answers(client, questions, "candidate", max_new_tokens=args.max_new_tokens)
            wall = time.perf_counter() - t0
            tokens = client.stats.completion_tokens
        finally:
            client.close()
    failed = sum(1 for a in answers if a.errors)
    n = sum(len(a.turns) for a in answers)
    return {
        "engine": engine.kind,
        "answers": n,
        "failed": failed,
        "completion_tokens": tokens,
        "answer_s": round(wall, 2),
        "start_s": round(ready - start, 2),
        "answers_per_s": round(n / wall, 3),
        "tokens_per_s": round(tokens / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/mt_bench"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    questions, _ = load_questions(args.data, max_questions=args.questions)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-eval-engine-") as tmp:
        work = Path(tmp)
        model = build_tiny_model(work / "tiny")
        engines = {
            "hf": EngineConfig(kind="hf"),
            "llamacpp": EngineConfig(kind="llamacpp", parallel=args.concurrency, threads=args.threads),
        }
        for i in range(args.repeats):
            for engine in engines.values():
                row = answer(engine, model, questions, args, work)
                rows.append({**row, "repeat": i})
                print(json.dumps(row), flush=True)
    med = {
        k: round(statistics.median(r["answers_per_s"] for r in rows if r["engine"] == k), 3) for k in engines
    }
    tok = {
        k: round(statistics.median(r["tokens_per_s"] for r in rows if r["engine"] == k), 1) for k in engines
    }
    print("| engine | answers/s (median) | completion tokens/s (median) | server start s |")
    print("|---|---:|---:|---:|")
    for k in engines:
        start = statistics.median(r["start_s"] for r in rows if r["engine"] == k)
        print(f"| {k} | {med[k]} | {tok[k]} | {start} |")
    print(
        json.dumps(
            {
                "llamacpp_over_hf_answers_per_s": round(med["llamacpp"] / med["hf"], 2),
                "llamacpp_over_hf_tokens_per_s": round(tok["llamacpp"] / tok["hf"], 2),
                **vars(args),
            }
        )
    )


if __name__ == "__main__":
    main()
