"""Generation at scale, each figure against its baseline run side by side in this script.

1. endpoints: two equal teacher replicas vs one. Each replica is a fake teacher in a process of its own
   with a fixed latency and a fixed number of slots (requests served at once, the rest queue, as on a
   vLLM replica); the client keeps 4 x slots requests in flight in both runs (more than one replica
   serves: the rest queue there, as against a busy server). Requests/s.
2. stream: the 3-step freeform flow (questions -> question filter -> answers) on `--leaves` leaves,
   against one replica with long-tailed latency (log-normal, median 0.5 s and p99 5 s, times
   `--latency-scale`; per request, deterministic, so both runs see the same latencies) and `--slots`
   slots; streamed vs step by step (`stream=False`). Wall time, and the share of the ideal endpoint-bound
   time (sum of the requests' latencies / slots) each reaches.
3. shards: the generation half of the pipeline (`generation_pipeline`: diff -> seeds -> generation
   shards -> critique) through kfp.local on the sample taxonomy with a fixed-latency fake teacher,
   4 shards vs 1. kfp.local runs the loop's tasks one after another, so this measures the fan-out's
   overhead on a laptop; on a cluster the shards are pods that run side by side.

    python benchmarks/bench_scale_gen.py                       # all three, ~3 min on 2 cores
    python benchmarks/bench_scale_gen.py --only stream --latency-scale 0.2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "tests" / "unit" / "critique" / "data" / "seeds.jsonl"


@contextmanager
def replica(*args: str):
    """A fake teacher in a process of its own; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_openai", *args], stdout=subprocess.PIPE, text=True
    )
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait()


def bench_endpoints(args) -> dict:
    from labpipe.llm.client import make_client
    from labpipe.llm.types import ChatRequest, ModelSpec

    requests = [
        ChatRequest([{"role": "user", "content": f"Write question {i}."}], f"q{i}")
        for i in range(args.requests)
    ]
    out = {}
    flags = ("--latency", str(args.latency), "--slots", str(args.slots))
    with replica(*flags) as a, replica(*flags) as b:
        for name, target in (("one", a), ("two", f"{a},{b}"), ("one again", a)):
            client = make_client(ModelSpec(target, model="fake-teacher", concurrency=4 * args.slots))
            client.complete(requests[:20])  # warm up: probe, imports
            started = time.perf_counter()
            results = client.complete(requests)
            wall = time.perf_counter() - started
            assert all(r.ok for r in results)
            out[name] = len(requests) / wall
    ideal_one = args.slots / args.latency
    print(
        f"endpoints: one {out['one']:.1f} req/s (again {out['one again']:.1f}), two {out['two']:.1f} req/s, "
        f"ratio {out['two'] / out['one']:.2f}x; ideal one {ideal_one:.0f} req/s, two {2 * ideal_one:.0f}"
    )
    return out


def _seeds(path: Path, leaves: int) -> None:
    records = [json.loads(line) for line in SEEDS.read_text().splitlines() if line.strip()]
    haiku = next(r for r in records if r["kind"] == "freeform_skill")
    with path.open("w") as f:
        for i in range(leaves):
            rec = {
                **haiku,
                "leaf_id": f"bench/leaf_{i}",
                "task_description": f"{haiku['task_description']} ({i})",
            }
            f.write(json.dumps(rec) + "\n")


def bench_stream(args) -> dict:
    from labpipe.generation.stage import GenerationConfig, run_generation
    from labpipe.llm.options import ClientOptions
    from tests.support.fake_openai import FakeOpenAIServer, lognormal_latency

    median, p99 = 0.5 * args.latency_scale, 5.0 * args.latency_scale
    latency = lognormal_latency(median, p99)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        seeds = Path(tmp) / "seeds.jsonl"
        _seeds(seeds, args.leaves)
        runs = (("steps", False), ("stream", True), ("steps again", False), ("stream again", True))
        for name, stream in runs[: 2 * args.repeat]:
            # a reply cache of its own per run: the cache's key is the model served, not the server's port
            os.environ["LABPIPE_CACHE"] = f"{tmp}/cache-{name}"
            with FakeOpenAIServer(latency_fn=latency, slots=args.slots) as server:
                config = GenerationConfig(
                    seeds=str(seeds), out=f"{tmp}/{name}",
                    teacher=ClientOptions(endpoint=server.base_url, concurrency=2 * args.slots),
                    gate=False, stream=stream, progress=False, fan_out_scale=args.fan_out_scale,
                )  # fmt: skip
                started = time.perf_counter()
                meta = run_generation(config)
                wall = time.perf_counter() - started
                ideal = sum(latency(r) for r in server.requests) / args.slots
                out[name] = {"wall_s": wall, "ideal_s": ideal, "requests": meta["requests_sent"]}
        same = (Path(tmp) / "steps" / "generated.jsonl").read_bytes() == (
            Path(tmp) / "stream" / "generated.jsonl"
        ).read_bytes()
    for name, r in out.items():
        print(
            f"stream: {name:13s} {r['wall_s']:6.2f} s for {r['requests']} requests, "
            f"{100 * r['ideal_s'] / r['wall_s']:.0f}% of the ideal {r['ideal_s']:.2f} s"
        )
    again = (
        f" (again {out['steps again']['wall_s'] / out['stream again']['wall_s']:.2f}x)"
        if "stream again" in out
        else ""
    )
    print(
        f"stream: speed-up {out['steps']['wall_s'] / out['stream']['wall_s']:.2f}x{again}; output identical: {same}"
    )
    return out


def bench_shards(args) -> dict:
    import os

    from kfp import local
    from labpipe.pipelines.lab_pipeline import generation_pipeline

    from labpipe.taxonomy.sample import prepare_sample_taxonomy

    os.environ.pop("MLFLOW_TRACKING_URI", None)
    out = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        replica("--latency", str(args.latency), "--slots", "16") as url,
    ):
        taxonomy = prepare_sample_taxonomy(Path(tmp) / "sample")
        for name, shards in (("1 shard", 1), ("4 shards", 4)):
            root = Path(tmp) / name.replace(" ", "_")
            local.init(
                runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True
            )
            started = time.perf_counter()
            generation_pipeline(
                taxonomy=str(taxonomy), base="empty", teacher=url, judge=url, chunk_tokens=200,
                generation_shards=shards, generation_gate=False, concurrency=16, critique_profile="smoke",
                samples_per_skill_leaf=5, seed=7,
            )  # fmt: skip
            out[name] = time.perf_counter() - started
    print(
        f"shards (kfp.local, sequential tasks): 1 shard {out['1 shard']:.1f} s, 4 shards {out['4 shards']:.1f} s, "
        f"ratio {out['4 shards'] / out['1 shard']:.2f}"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=("endpoints", "stream", "shards"))
    parser.add_argument("--requests", type=int, default=800, help="endpoints: requests per run")
    parser.add_argument("--latency", type=float, default=0.1, help="endpoints, shards: seconds per request")
    parser.add_argument("--slots", type=int, default=8, help="requests a replica serves at once")
    parser.add_argument("--leaves", type=int, default=12, help="stream: freeform leaves")
    parser.add_argument(
        "--fan-out-scale", type=float, default=1.0, help="stream: fan-out of item-creating steps"
    )
    parser.add_argument(
        "--latency-scale", type=float, default=0.5, help="stream: times median 0.5 s / p99 5 s"
    )
    parser.add_argument("--repeat", type=int, default=2, choices=(1, 2), help="stream: pairs of runs")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    for name, fn in (("endpoints", bench_endpoints), ("stream", bench_stream), ("shards", bench_shards)):
        if args.only in (None, name):
            fn(args)


if __name__ == "__main__":
    main()
