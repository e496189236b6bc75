"""Resume after kill -9: how many requests does the rerun send, against the work that remained?

Side by side, against the fake OpenAI-compatible server with a fixed latency:
  baseline  an uninterrupted `labpipe generate` (total requests);
  killed    the same command, SIGKILLed once about half of the requests are checkpointed;
  rerun     the same command again with the same --out.
Reports: remaining = total - checkpointed at the kill; extra = rerun requests - remaining (target
<= 1% of remaining), and whether the rerun's generated.jsonl equals the baseline's.

    python benchmarks/bench_resume.py [--leaves 40] [--latency 0.02] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _checkout  # noqa: F401  (tests.support from a checkout)

from tests.support.fake_openai import FakeOpenAIServer

SEEDS = Path(__file__).resolve().parents[1] / "tests" / "unit" / "critique" / "data" / "seeds.jsonl"


def make_seeds(path: Path, leaves: int) -> None:
    """`leaves` seed records, cycling through the fixture's four kinds with distinct leaf ids."""
    base = [json.loads(line) for line in SEEDS.read_text().splitlines()]
    with path.open("w") as f:
        for i in range(leaves):
            rec = dict(base[i % len(base)])
            rec["leaf_id"] = f"{rec['leaf_id']}_{i}"
            rec["task_description"] = f"{rec.get('task_description', '')} (variant {i})"
            rec["domain"] = f"{rec.get('domain', '')} {i}"
            f.write(json.dumps(rec) + "\n")


def command(seeds: Path, out: Path, url: str, concurrency: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "labpipe.cli",
        "generate",
        "--seeds",
        str(seeds),
        "--out",
        str(out),
        "--teacher",
        url,
        "--concurrency",
        str(concurrency),
        "--no-gate",
        "--quiet",
    ]


def checkpointed(out: Path) -> int:
    directory = out / "checkpoints"
    return sum(p.read_bytes().count(b"\n") for p in directory.glob("*.jsonl")) if directory.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-resume-"))
    seeds = work / "seeds.jsonl"
    make_seeds(seeds, args.leaves)
    env = {**os.environ, "OPENAI_API_KEY": "bench"}
    with FakeOpenAIServer(latency_s=args.latency) as server:
        t0 = time.monotonic()
        subprocess.run(
            command(seeds, work / "baseline", server.base_url, args.concurrency),
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        baseline_s = time.monotonic() - t0
        total = server.total_requests
        server.reset_counters()
        out = work / "resumed"
        proc = subprocess.Popen(
            command(seeds, out, server.base_url, args.concurrency), env=env, stdout=subprocess.DEVNULL
        )
        while checkpointed(out) < total // 2 and proc.poll() is None:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done = checkpointed(out)
        sent_before_kill = server.total_requests
        server.reset_counters()
        t0 = time.monotonic()
        subprocess.run(
            command(seeds, out, server.base_url, args.concurrency),
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        rerun_s = time.monotonic() - t0
        rerun = server.total_requests
    remaining = total - done
    same = (out / "generated.jsonl").read_text() == (work / "baseline" / "generated.jsonl").read_text()
    result = {
        "leaves": args.leaves,
        "latency_s": args.latency,
        "concurrency": args.concurrency,
        "baseline_requests": total,
        "baseline_s": round(baseline_s, 2),
        "checkpointed_at_kill": done,
        "sent_before_kill": sent_before_kill,
        "lost_in_flight": sent_before_kill - done,
        "remaining": remaining,
        "rerun_requests": rerun,
        "rerun_s": round(rerun_s, 2),
        "extra_requests": rerun - remaining,
        "extra_pct_of_remaining": round(100 * (rerun - remaining) / remaining, 3),
        "rerun_output_equals_baseline": same,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
