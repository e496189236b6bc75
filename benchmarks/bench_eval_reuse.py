"""MT-Bench's evaluation in a weekly rerun: answers generated and judge requests, first run vs rerun, with the
answers and verdicts reused from the shared cache (labpipe.evaluation.answering), side by side.

Two runs of the pipeline's evaluation step (`evaluate_candidate`, checkpoint_selection=last) with the same
base model, questions, judge and settings, in fresh working directories, one cache directory (the
`generation_cache` a cluster keeps on s3://):
  first run   candidate A (tiny model, seed 0), base B (seed 1): every answer and verdict is new
  rerun       candidate A' (seed 2: this week's training), the same base B
The judge is the tiny model in-process (schema-constrained verdicts: every judgment is rated, so no
re-asks blur the count). The production model is never answered again in any run: the gate reads its score
from the registry. Target: rerun / first <= 0.5 for answers generated and for judge requests.

    python benchmarks/bench_eval_reuse.py [--questions 80] [--max-new-tokens 32] [--engine hf|llamacpp]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from labpipe.evaluation.candidate import CandidateEvalConfig, evaluate_candidate
from labpipe.llm.options import ClientOptions
from labpipe.models.tiny import TinyModelConfig, build_tiny_model


def training_out(root: Path, seed: int) -> Path:
    out = root / f"train-{seed}"
    build_tiny_model(out / "model", TinyModelConfig(seed=seed))
    return out


def run(label: str, candidate: Path, base: Path, cache: Path, args, work: Path) -> dict:
    start = time.perf_counter()
    result = evaluate_candidate(
        CandidateEvalConfig(
            training_out=str(candidate),
            decision_out=str(work / f"{label}-decision.json"),
            base_model=str(base / "model"),
            judge=ClientOptions(endpoint=str(base / "model")),
            questions=args.data,
            max_questions=args.questions,
            max_new_tokens=args.max_new_tokens,
            checkpoint_selection="last",
            engine=args.engine,
            cache=str(cache),
        )
    )
    m = result.metrics
    return {
        "run": label,
        "answers_generated": m["answers_sent"],
        "answers_reused": m["answers_cached"],
        "judge_requests": m["judge_requests_sent"],
        "engine_starts": m["engine_starts"],
        "wall_s": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=80, help="MT-Bench questions (0 or 80 = all)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--engine", default="hf", choices=["hf", "llamacpp"])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/mt_bench"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-eval-reuse-"))
    try:
        base = training_out(root, 1)
        cache = root / "cache"
        rows = [
            run("first run", training_out(root, 0), base, cache, args, root),
            run("rerun", training_out(root, 2), base, cache, args, root),
        ]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    first, rerun = rows
    ratios = {k: round(rerun[k] / first[k], 3) for k in ("answers_generated", "judge_requests") if first[k]}
    print("| run | answers generated | answers reused | judge requests | engine starts | wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['run']} | {r['answers_generated']} | {r['answers_reused']} | {r['judge_requests']} | "
            f"{r['engine_starts']} | {r['wall_s']} |"
        )
    print(json.dumps({"rerun_over_first": ratios, **vars(args)}))


if __name__ == "__main__":
    main()
