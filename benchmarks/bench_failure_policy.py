"""The failure policy under issue 19's fault scenario, before and after, side by side on the same seeds.

The teacher is the fake OpenAI-compatible server (tests.support.fake_openai), because the point is
labpipe's behaviour under faults: on every attempt, 20% transport faults (429, 500, 503, dropped
connections, 5% each) and 10% malformed replies (schema violations and prose, 5% each), seeded. The run:
the test seed records as 9 leaves each (~265 teacher requests, gate off), 8 in flight.

"before": a stage failed on any request that failed for good (max_failed_share 0), and an unusable reply
repeated word for word ended its re-asks at once. "after": the default policy (max_failed_share 0.02, a
repeat asked once more). For each fault seed: did the stage finish, requests failed for good (and their
kinds), records lost against a fault-free run of the same seeds, HTTP requests per planned request.

    python benchmarks/bench_failure_policy.py [--seeds 6] [--copies 9]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _checkout import REPO

from labpipe.errors import UserError
from labpipe.generation.stage import MANIFEST, GenerationConfig, run_generation
from labpipe.llm.failures import DEFAULT_MAX_FAILED_SHARE
from labpipe.llm.openai_client import OpenAIChatClient
from labpipe.llm.options import ClientOptions
from labpipe.llm.types import ModelSpec
from tests.support.fake_openai import FakeOpenAIServer, FaultPlan

SEEDS = REPO / "tests" / "unit" / "critique" / "data" / "seeds.jsonl"
TRANSPORT = {"rate_limit": 0.05, "server_error": 0.05, "unavailable": 0.05, "drop": 0.05}
MALFORMED = {"schema_violation": 0.05, "non_json": 0.05}


class Before(OpenAIChatClient):
    """The re-ask rule before: the first word-for-word repeat of an unusable reply ends the re-asks."""

    def _stop_repeat(self, ep, outcome, seen, repeats) -> bool:
        return bool(outcome.text) and outcome.text in seen


def many_leaves(path: Path, copies: int) -> str:
    rows = []
    for c in range(copies):
        for line in SEEDS.read_text().splitlines():
            rec = json.loads(line)
            rec["leaf_id"] += f"_{c}"
            rec["task_description"] = f"{rec.get('task_description', '')} (variant {c})"
            rows.append(json.dumps(rec))
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def run(label: str, cls, share: float, seed: int | None, seeds: str, work: Path) -> dict:
    faults = (
        FaultPlan(rates={**TRANSPORT, **MALFORMED}, seed=seed, retry_after_s=0) if seed is not None else None
    )
    out = work / f"{label}-{seed}"
    with FakeOpenAIServer(faults=faults) as server:
        spec = ModelSpec(server.base_url, concurrency=8, backoff_base_s=0.01, backoff_max_s=0.05)
        client = cls(spec)
        config = GenerationConfig(
            seeds=seeds,
            out=str(out),
            teacher=ClientOptions(endpoint=server.base_url, concurrency=8),
            fan_out_scale=1.0,
            gate=False,
            progress=False,
            generation_cache="off",
            max_failed_share=share,
        )
        started = time.monotonic()
        try:
            meta = run_generation(config, client=client)
            finished = True
        except UserError:
            finished = False
            meta = json.loads((out / MANIFEST).read_text())
        wall = time.monotonic() - started
    manifest = json.loads((out / MANIFEST).read_text())
    kinds = {k: f["count"] for k, f in manifest["teacher_client"]["failures"].items()}
    return {
        "label": label,
        "seed": seed,
        "finished": finished,
        "failed": meta["requests_failed"],
        "kinds": kinds,
        "records": meta["records"] if finished else 0,
        "planned": meta["requests_sent"],
        "http": client.stats.requests + client.stats.probes,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--copies", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-failure-policy-") as tmp:
        work = Path(tmp)
        seeds = many_leaves(work / "seeds.jsonl", args.copies)
        clean = run("clean", OpenAIChatClient, 0.0, None, seeds, work)
        rows = []
        for seed in range(1, args.seeds + 1):
            rows.append(run("before", Before, 0.0, seed, seeds, work))
            rows.append(run("after", OpenAIChatClient, DEFAULT_MAX_FAILED_SHARE, seed, seeds, work))
    print(f"fault-free run: {clean['planned']} planned requests, {clean['records']} records\n")
    print(
        "| fault seed | run | stage finished | failed for good (kinds) | records lost | HTTP per planned request |"
    )
    print("|---:|---|---|---|---:|---:|")
    for r in rows:
        lost = clean["records"] - r["records"] if r["finished"] else "all (stage failed)"
        kinds = ", ".join(f"{n} {k}" for k, n in r["kinds"].items()) or "-"
        print(
            f"| {r['seed']} | {r['label']} | {'yes' if r['finished'] else 'no'} | {r['failed']} ({kinds}) | "
            f"{lost} | {r['http'] / r['planned']:.2f} |"
        )
    for label in ("before", "after"):
        mine = [r for r in rows if r["label"] == label]
        print(
            f"\n{label}: {sum(r['finished'] for r in mine)}/{len(mine)} stages finished, "
            f"{sum(r['failed'] for r in mine)} requests failed for good in all"
        )


if __name__ == "__main__":
    main()
