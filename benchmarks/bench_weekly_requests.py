"""A weekly rerun after editing one leaf: teacher and judge requests, with and without the shared
generation cache, side by side against the fake OpenAI-compatible teacher/judge.

A taxonomy of `--leaves` skill leaves (synthesised from the sample taxonomy's freeform and grounded
leaves, each with its own task description) in a temporary git repository. Every run covers the
whole taxonomy (base "empty": what a weekly run with scope=taxonomy trains on), in fresh output
directories, as a new pipeline run would:
  run 1           full run, empty cache (the baseline: every request paid for)
  edit            one leaf's task description changes; committed
  rerun, cache    the same, with run 1's generation cache
  rerun, no cache the same, with --cache off (what every weekly run cost before the cache)
The requests are counted by the fake server (its request log), per stage. Target: the cached rerun
sends only the edited leaf's requests, about 1/N of a full run.

    python benchmarks/bench_weekly_requests.py [--leaves 24] [--fan-out-scale 1.0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import _checkout  # noqa: F401  (tests.support from a checkout)

from labpipe.critique.stage import CritiqueConfig, run_critique
from labpipe.generation.stage import MANIFEST, GenerationConfig, run_generation
from labpipe.llm.options import ClientOptions
from labpipe.taxonomy import gitrepo
from labpipe.taxonomy.sample import commit_all, sample_taxonomy_source
from labpipe.taxonomy.stage import (
    SeedExtractionConfig,
    TaxonomyDiffConfig,
    run_seed_extraction,
    run_taxonomy_diff,
)
from tests.support.fake_openai import FakeOpenAIServer

SKILLS = (
    "compositional_skills/writing/freeform/haiku",
    "compositional_skills/grounded/extraction/action_items",
)


def make_taxonomy(root: Path, leaves: int) -> list[str]:
    """`leaves` skill leaves, alternating the sample's freeform and grounded leaf; returns their ids."""
    source = sample_taxonomy_source()
    ids = []
    for i in range(leaves):
        template = SKILLS[i % len(SKILLS)]
        leaf = root / template.rsplit("/", 1)[0] / f"leaf_{i:03d}"
        leaf.mkdir(parents=True)
        text = (source / template / "qna.yaml").read_text()
        lines = [
            f"{line} (variant {i})" if line.startswith("task_description:") else line
            for line in text.splitlines()
        ]
        (leaf / "qna.yaml").write_text("\n".join(lines) + "\n")
        (leaf / "attribution.txt").write_text((source / template / "attribution.txt").read_text())
        ids.append(str(leaf.relative_to(root)))
    commit_all(root, "synthetic taxonomy")
    return ids


def edit_leaf(root: Path, leaf_id: str) -> None:
    path = root / leaf_id / "qna.yaml"
    path.write_text(path.read_text().replace(")\n", " v2)\n", 1))
    gitrepo.git("-c", "commit.gpgsign=false", "commit", "--quiet", "-am", "edit one leaf", cwd=root,
                env={"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
                     "GIT_COMMITTER_EMAIL": "b@b"})


def run(server: FakeOpenAIServer, taxonomy: Path, out: Path, cache: str, fan_out_scale: float) -> dict:
    """One weekly run over the whole taxonomy in fresh directories; requests counted by the server."""
    run_taxonomy_diff(TaxonomyDiffConfig(taxonomy=str(taxonomy), out=str(out / "diff"), base="empty"))
    run_seed_extraction(SeedExtractionConfig(diff=str(out / "diff"), out=str(out / "seeds.jsonl")))
    server.reset_counters()
    started = time.monotonic()
    gen = run_generation(
        GenerationConfig(
            seeds=str(out / "seeds.jsonl"), out=str(out / "gen"), teacher=ClientOptions(endpoint=server.base_url),
            progress=False,
            gate=False, fan_out_scale=fan_out_scale, generation_cache=cache,
        )
    )
    teacher = server.total_requests
    server.reset_counters()
    crit = run_critique(
        CritiqueConfig(
            generated=str(out / "gen"), out=str(out / "crit"), judge=ClientOptions(endpoint=server.base_url),
            profile="smoke",
            generation_cache=cache,
        )
    )
    per_leaf = json.loads((out / "gen" / MANIFEST).read_text())["per_leaf"]
    return {
        "teacher": teacher,
        "judge": server.total_requests,
        "gen": gen,
        "crit": crit,
        "wall_s": time.monotonic() - started,
        "leaf_requests": {leaf: sum(s["requests"] for s in v["steps"]) for leaf, v in per_leaf.items()},
        "records": gen["records"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=24)
    parser.add_argument("--fan-out-scale", type=float, default=1.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-weekly-"))
    taxonomy = work / "taxonomy"
    ids = make_taxonomy(taxonomy, args.leaves)
    cache = str(work / "generation-cache")
    edited = ids[len(ids) // 2]
    with FakeOpenAIServer() as server:
        full = run(server, taxonomy, work / "run1", cache, args.fan_out_scale)
        edit_leaf(taxonomy, edited)
        cached = run(server, taxonomy, work / "run2-cache", cache, args.fan_out_scale)
        uncached = run(server, taxonomy, work / "run2-off", "off", args.fan_out_scale)
    n = len(full["leaf_requests"])
    print(f"{n} leaves, edited {edited}: run 1 sent {full['leaf_requests'][edited]} teacher requests for it")
    print("| run | teacher requests | judge requests | reused (gen + judge) | generated records | wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in (("run 1 (full, empty cache)", full), ("rerun, no cache (--cache off)", uncached),
                    ("rerun, shared cache", cached)):
        reused = r["gen"]["requests_reused"] + r["crit"]["requests_reused"]
        print(f"| {name} | {r['teacher']:,} | {r['judge']:,} | {reused:,} | {r['records']:,} | {r['wall_s']:.1f} |")
    edited_now = cached["leaf_requests"][edited]
    total = cached["teacher"] + cached["judge"]
    print(
        f"cached rerun / uncached rerun: teacher {cached['teacher'] / uncached['teacher']:.3f}, "
        f"teacher+judge {total / (uncached['teacher'] + uncached['judge']):.3f} (1/N = {1 / n:.3f}); "
        f"the edited leaf's teacher requests in the rerun: {edited_now}; "
        f"sent beyond them: {cached['teacher'] - edited_now}; "
        f"same records as without the cache: {cached['records'] == uncached['records']}"
    )


if __name__ == "__main__":
    main()
