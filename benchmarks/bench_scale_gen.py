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

import _checkout  # noqa: F401  (tests.support from a checkout)

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


class _Dependencies:
    """Records, during a streamed run, which reply makes which request sendable (stream.Stream's `plan`
    and `children`), for the run's content-dependency lower bound."""

    def __init__(self) -> None:
        self.requests: dict[tuple, set[str]] = {}  # (leaf, step, item id) -> request ids
        self.roots: set[str] = set()  # first-step requests
        self.items: dict[str, set[tuple]] = {}  # request id -> the items its reply makes
        self.body: dict[str, str] = {}  # request id -> (messages, seed) key

    def install(self, monkeypatch) -> None:
        from labpipe.generation import stream

        plan, children = stream.plan, stream.Stream.children

        def recording_plan(flow, step, items, **kw):
            out = plan(flow, step, items, **kw)
            for item, request in out:
                self.requests.setdefault((item["leaf_id"], step.name, item["id"]), set()).add(
                    request.request_id
                )
                self.body[request.request_id] = _key(request.messages, request.seed)
                if step is flow.generate_steps[0]:
                    self.roots.add(request.request_id)
            return out

        def recording_children(self_, leaf, depth, item, request):
            out = children(self_, leaf, depth, item, request)
            steps = self_.states[leaf].flow.generate_steps
            if depth + 1 < len(steps):
                nodes = self.items.setdefault(request.request_id, set())
                nodes.update((leaf, steps[depth + 1].name, c["id"]) for c in out)
            return out

        monkeypatch(stream, "plan", recording_plan)
        monkeypatch(stream.Stream, "children", recording_children)

    def longest_chain(self, latency_of: dict[str, float]) -> float:
        """The latest end of any request if every request were sent the moment its first parent replied."""
        parents: dict[str, set[str]] = {}
        for parent, nodes in self.items.items():
            for node in nodes:
                for rid in self.requests.get(node, ()):
                    parents.setdefault(rid, set()).add(parent)
        end: dict[str, float] = {}

        def finish(rid: str) -> float:
            if rid not in end:
                lat = latency_of.get(self.body[rid], 0.0)
                ready = 0.0 if rid in self.roots else min(finish(p) for p in parents[rid])
                end[rid] = ready + lat
            return end[rid]

        return max((finish(r) for r in self.body if self.body[r] in latency_of), default=0.0)


def flat_span(latencies: list[float], slots: int, shuffles: int = 20) -> float:
    """The span of the same requests with no dependencies at all (every one ready at once) on `slots`
    slots, the server never idle while one waits, sent in a random order (mean over `shuffles`): what a
    client that cannot know a latency before the reply gets at best, in expectation. It is above the
    endpoint bound by the final drain (the slots idle while the last replies come in; Graham's list
    scheduling bound: at most the longest latency)."""
    import heapq
    import random

    spans = []
    for k in range(shuffles):
        order = list(latencies)
        random.Random(k).shuffle(order)
        free = [0.0] * slots
        for lat in order:
            heapq.heappush(free, heapq.heappop(free) + lat)
        spans.append(max(free))
    return sum(spans) / len(spans)


def _key(messages, seed) -> str:
    return json.dumps([list(messages), seed], sort_keys=True)


# name -> (longest chains first, the probe beside the flow); "shipped" is the order before issue 19's fix
VARIANTS = {"shipped": (False, False), "new": (True, True), "chains": (True, False), "probe": (False, True),
            "new fixed": (True, True)}  # fmt: skip  # "... fixed": a fixed limit (adaptive_concurrency=False)


def bench_order(args) -> dict:
    """Streamed generation: span vs the run's content-dependency lower bound, new order vs shipped order."""
    import sys

    from labpipe.generation import flow as flow_module
    from labpipe.generation.stage import GenerationConfig, run_generation
    from labpipe.llm.client import make_client
    from labpipe.llm.options import ClientOptions, model_spec
    from tests.support.fake_openai import FakeOpenAIServer, lognormal_latency

    sys.setrecursionlimit(10000)
    chain_priority = flow_module.chain_priority

    def shipped_priority(flow, step, fan_out_index=0):  # follow-ups first: the deeper the step, the sooner
        return 1 + next((i for i, s in enumerate(flow.generate_steps) if s is step), -1)

    latency = lognormal_latency(0.5 * args.latency_scale, 5.0 * args.latency_scale)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        seeds = Path(tmp) / "seeds.jsonl"
        _seeds(seeds, args.leaves)
        for draw in range(args.first_draw, args.first_draw + args.draws):
            names = [v for _ in range(args.repeat) for v in args.variants.split(",")]
            for k, name in enumerate(names):  # k: a fresh output and cache per run (no resume)
                chain_first, probe_aside = VARIANTS[name]
                patched: list = []

                def monkeypatch(obj, attr, value, patched=patched):
                    patched.append((obj, attr, getattr(obj, attr)))
                    setattr(obj, attr, value)

                deps = _Dependencies()
                deps.install(monkeypatch)
                flow_module.chain_priority = chain_priority if chain_first else shipped_priority
                os.environ["LABPIPE_CACHE"] = f"{tmp}/cache-{draw}-{k}-{name}"
                try:
                    # GET /models as vLLM's (max_model_len): the server a flow is run against
                    with FakeOpenAIServer(
                        latency_fn=latency, slots=args.slots, max_context_tokens=32768, context_dialect="vllm",
                        report_context=True,
                    ) as server:  # fmt: skip
                        config = GenerationConfig(
                            seeds=str(seeds), out=f"{tmp}/{draw}-{k}-{name}",
                            teacher=ClientOptions(endpoint=server.base_url, concurrency=2 * args.slots),
                            gate=False, progress=False, seed=1000 * draw, fan_out_scale=args.fan_out_scale,
                        )  # fmt: skip
                        spec = model_spec(config.teacher, "teacher")
                        spec.adaptive_concurrency = not name.endswith("fixed")
                        client = make_client(spec)
                        if not probe_aside:  # the shipped client: the probe alone before any flow request
                            client.model_name  # noqa: B018
                            client._endpoint.known_to_enforce = False
                        started = time.perf_counter()
                        meta = run_generation(config, client=client)
                        wall = time.perf_counter() - started
                        bodies = [b for b in server.requests if "labpipe_probe" not in json.dumps(b)]
                finally:
                    for obj, attr, value in reversed(patched):
                        setattr(obj, attr, value)
                    flow_module.chain_priority = chain_priority
                latency_of = {_key(b["messages"], b.get("seed")): latency(b) for b in bodies}
                work = sum(latency(b) for b in bodies) / args.slots
                chain = deps.longest_chain(latency_of)
                bound = max(work, chain)
                flat = flat_span([latency(b) for b in bodies], args.slots)
                rows.append((draw, name, wall, bound, work, chain, meta["requests_sent"], flat))
                limit = client.limit.describe() if client.limit is not None else {}
                print(
                    f"order: draw {draw} {name:8s} {wall:6.2f} s, {meta['requests_sent']} requests; lower bound "
                    f"{bound:.2f} s (endpoint {work:.2f} s, longest chain {chain:.2f} s): {100 * bound / wall:.0f}%; "
                    f"no-dependency list schedule {flat:.2f} s ({100 * bound / flat:.0f}% of the bound; this run "
                    f"{100 * flat / wall:.0f}% of it); {limit}",
                    flush=True,
                )
    for label in dict.fromkeys(names):
        shares = [100 * r[3] / r[2] for r in rows if r[1] == label]
        flats = [100 * r[7] / r[2] for r in rows if r[1] == label]
        print(
            f"order: {label}: {min(shares):.0f}-{max(shares):.0f}% of the lower bound (mean {sum(shares) / len(shares):.0f}%); "
            f"{min(flats):.0f}-{max(flats):.0f}% of the no-dependency list schedule (mean {sum(flats) / len(flats):.0f}%)"
        )
    return {"rows": rows}


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
    parser.add_argument("--only", choices=("endpoints", "stream", "order", "shards"))
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
    parser.add_argument("--repeat", type=int, default=2, choices=(1, 2), help="stream, order: pairs of runs")
    parser.add_argument("--variants", default="shipped,new", help=f"order: of {', '.join(VARIANTS)}")
    parser.add_argument("--first-draw", type=int, default=0, help="order: the first latency draw")
    parser.add_argument(
        "--draws", type=int, default=3, help="order: latency draws (the flows' sampling seed)"
    )
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    benches = (
        ("endpoints", bench_endpoints),
        ("stream", bench_stream),
        ("order", bench_order),
        ("shards", bench_shards),
    )
    for name, fn in benches:
        if args.only in (None, name):
            fn(args)


if __name__ == "__main__":
    main()
