"""MT-Bench evaluation speed, each figure a ratio against a baseline run side by side in this script.

1. Answer generation on the tiny model, CPU, in-process: batched (batch_size 16) vs sequential (1).
   Target: >= 4x.
2. Judging through an OpenAI-compatible endpoint with a fixed latency per request (the fake server):
   achieved throughput vs the ideal for the concurrency (requests / (ceil(requests / concurrency) * latency)),
   with a sequential run (concurrency 1) as the baseline. Target: >= 90% of ideal.

    python benchmarks/bench_eval.py [--questions ../shared/data/mt_bench] [--n 16] [--tokens 32]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import _checkout  # noqa: F401  (tests.support from a checkout)

from labpipe.evaluation.answers import generate_answers
from labpipe.evaluation.fastchat_io import Answer, attach_references
from labpipe.evaluation.judge import judge_answers
from labpipe.evaluation.prompts import load_judge_prompts
from labpipe.evaluation.questions import load_questions
from labpipe.llm.client import make_client
from labpipe.llm.types import ModelSpec
from labpipe.models.tiny import build_tiny_model
from tests.support.fake_openai import FakeOpenAIServer


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench_answers(model: Path, questions, tokens: int) -> dict:
    def run(batch_size: int):
        client = make_client(ModelSpec(str(model), batch_size=batch_size))
        generate_answers(client, questions[:2], "warmup", max_new_tokens=4)  # loads the model
        seconds, answers = timed(lambda: generate_answers(client, questions, "m", max_new_tokens=tokens))
        assert all(not a.errors for a in answers)
        return seconds

    sequential = run(1)
    batched = run(16)
    return {
        "questions": len(questions),
        "turns": 2 * len(questions),
        "max_new_tokens": tokens,
        "sequential_s": sequential,
        "batched_s": batched,
        "speedup": sequential / batched,
    }


def bench_judging(prompts, questions, latency: float, concurrency: int, sequential_n: int = 8) -> dict:
    """Judge all turns of one model's answers; the sequential baseline judges only `sequential_n` questions."""

    def run(qs, conc: int):
        answers = {"m": [Answer(q.question_id, "m", ["An answer.", "Another answer."]) for q in qs]}
        with FakeOpenAIServer(lambda r: "Fine. Rating: [[7]]", model="judge", latency_s=latency) as server:
            client = make_client(ModelSpec(server.base_url, model="judge", concurrency=conc))
            client.model_name  # noqa: B018 - probe outside the timed region
            seconds, result = timed(
                lambda: judge_answers(client, prompts, qs, answers, judge_name="judge", structured=False)
            )
            assert result.requests == 2 * len(qs) and not result.excluded
            return result.requests, seconds, server.max_in_flight

    seq_n, seq_s, _ = run(questions[:sequential_n], 1)
    n, conc_s, in_flight = run(questions, concurrency)
    ideal_s = math.ceil(n / concurrency) * latency
    return {
        "requests": n,
        "latency_s": latency,
        "concurrency": concurrency,
        "max_in_flight": in_flight,
        "concurrent_s": conc_s,
        "ideal_s": ideal_s,
        "efficiency": ideal_s / conc_s,
        "throughput": n / conc_s,
        "sequential_throughput": seq_n / seq_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--questions", default=str(Path(__file__).resolve().parents[2] / "shared/data/mt_bench")
    )
    parser.add_argument("--n", type=int, default=16, help="questions for answer generation")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument(
        "--latency", type=float, default=1.0, help="seconds per judge request (GPT-4: several)"
    )
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    questions, _ = load_questions(args.questions)
    questions = attach_references(questions, data_dir=args.questions)
    prompts = load_judge_prompts(data_dir=args.questions)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "tiny")
        a = bench_answers(model, questions[: args.n], args.tokens)
    print(
        f"answers (tiny model, CPU): {a['turns']} turns x {a['max_new_tokens']} new tokens: "
        f"sequential {a['sequential_s']:.2f} s, batched {a['batched_s']:.2f} s -> {a['speedup']:.1f}x"
    )
    j = bench_judging(prompts, questions, args.latency, args.concurrency)
    print(
        f"judging (endpoint, {j['latency_s']} s/request): {j['requests']} requests, concurrency "
        f"{j['concurrency']} (max in flight {j['max_in_flight']}): {j['concurrent_s']:.2f} s vs ideal "
        f"{j['ideal_s']:.2f} s -> {100 * j['efficiency']:.1f}% of ideal; {j['throughput']:.1f} req/s vs "
        f"sequential {j['sequential_throughput']:.2f} req/s"
    )


if __name__ == "__main__":
    main()
