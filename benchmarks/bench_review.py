"""Review benchmarks (labpipe.review), each with a baseline side by side.

1. overlap: comparing one leaf against every other leaf of the public InstructLab taxonomy in ../shared/data
   (`head/`, main at 9488b9b, and the largest tree there, `scenarios/X1_deletion_only_reorg/base`), with
   critique's near-duplicate measure as the review computes it (`review.overlap.find_overlap`: exact Jaccard
   of critique's word 3-shingles, every pair, size filter), vs the baseline of critique's own estimate of it
   (`critique.dedup.near_duplicates`: MinHash LSH over the other leaves' seeds and then the leaf's). Per
   leaf: time of one review's overlap check, and the near-duplicates each finds.
2. laptop: `labpipe review` of one changed leaf (the sample taxonomy's tool_care_tips on its own branch) on
   the laptop path (the tiny model as base, teacher and judge, in-process), then the following full
   `labpipe run` on that branch with the same LABPIPE_CACHE: wall times side by side, and how many of the
   sample's teacher requests the run reused from the shared generation cache (target: all).

    python benchmarks/bench_review.py [--part overlap|laptop|all] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LABPIPE_SHARED_DATA", REPO.parent / "shared" / "data"))
LABPIPE = str(Path(sys.executable).parent / "labpipe")
GOOD = "compositional_skills/writing/freeform/tool_care_tips"


def _tree_seeds(root: Path):
    from labpipe.review.overlap import seeds_of
    from labpipe.review.stage import reference_leaves
    from labpipe.taxonomy.seeds import seed_examples
    from labpipe.taxonomy.validate import find_leaf_files

    leaves = reference_leaves(root)  # what a review compares with (foundational skills included)
    files = len(find_leaf_files(root, foundational=True)[0])
    return {leaf.leaf_id: seeds_of(leaf.leaf_id, seed_examples(leaf)) for leaf in leaves}, files


def _baseline(mine, others, threshold: float) -> int:
    """Critique's MinHash LSH estimate: the other leaves' seeds first, the leaf's last; near-duplicates found."""
    from labpipe.critique.dedup import near_duplicates

    records = [{"id": s.id, "question": s.question, "answer": s.answer} for s in (*others, *mine)]
    ids = {s.id for s in mine}
    return sum(1 for rec, of in near_duplicates(records, threshold).items() if rec in ids and of not in ids)


def bench_overlap(threshold: float = 0.85) -> list[dict]:
    from labpipe.review.overlap import find_overlap

    rows = []
    for name in ("head", "scenarios/X1_deletion_only_reorg/base"):
        root = SHARED / "taxonomy" / name
        if not root.is_dir():
            raise SystemExit(f"{root}: the shared data is missing (set LABPIPE_SHARED_DATA)")
        leaves, checked = _tree_seeds(root)
        find_overlap(next(iter(leaves.values())), [], threshold)  # import datasketch once, outside the timing
        review_s, base_s, found, base_found = [], [], 0, 0
        for leaf_id, mine in leaves.items():
            others = [s for other, seeds in leaves.items() if other != leaf_id for s in seeds]
            t = time.perf_counter()
            result = find_overlap(mine, others, threshold)
            review_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            base_found += _baseline(mine, others, threshold)
            base_s.append(time.perf_counter() - t)
            found += len(result.near_duplicates)
        seeds = sum(len(s) for s in leaves.values())
        rows.append({
            "tree": name, "leaves": len(leaves), "leaf_files": checked, "seeds": seeds,
            "review_median_ms": round(statistics.median(review_s) * 1000, 1),
            "review_max_ms": round(max(review_s) * 1000, 1),
            "baseline_median_ms": round(statistics.median(base_s) * 1000, 1),
            "baseline_max_ms": round(max(base_s) * 1000, 1),
            "near_duplicates": found, "baseline_near_duplicates": base_found,
        })  # fmt: skip
    return rows


def _labpipe(*args: str, env: dict[str, str], log: Path) -> float:
    t = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run([LABPIPE, *args], stdout=out, stderr=subprocess.STDOUT, env=env, timeout=7200)
    took = time.monotonic() - t
    if proc.returncode not in (0, 1):
        raise SystemExit(f"labpipe {args[0]} exited {proc.returncode}; see {log}")
    return took


def _request_ids(folder: Path) -> set[str]:
    from labpipe.generation.checkpoint import iter_rows

    return {row["request_id"] for path in folder.glob("*.jsonl") for row in iter_rows(path)}


def bench_laptop(work: Path) -> dict:
    from labpipe.models.tiny import build_tiny_model
    from labpipe.taxonomy.sample import (
        BRANCHES_DIR,
        add_branch,
        prepare_sample_taxonomy,
        sample_taxonomy_source,
    )

    tiny = build_tiny_model(work / "tiny")
    taxonomy = prepare_sample_taxonomy(work / "sample")
    files = work / "branch-files"
    shutil.copytree(sample_taxonomy_source() / BRANCHES_DIR / "contrib-new-leaves" / GOOD, files / GOOD)
    add_branch(taxonomy, "contrib/tool-care-tips", files, "Add tool care tips")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(LABPIPE_CACHE=str(work / "cache"), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    mt_bench = str(SHARED / "mt_bench")
    review_s = _labpipe(
        "review", "--taxonomy", str(taxonomy), "--ref", "contrib/tool-care-tips", "--base", "main",
        "--base-model", str(tiny), "--teacher", str(tiny), "--no-generation-gate", "--critique-profile", "smoke",
        "--questions", mt_bench, "--max-new-tokens", "48", "--out", str(work / "review"),
        "--workdir", str(work / "review-work"), env=env, log=work / "review.log",
    )  # fmt: skip
    doc = json.loads((work / "review" / "review.json").read_text())
    [leaf] = doc["leaves"]
    sample_ids = _request_ids(work / "review-work" / GOOD.replace("/", "_") / "generated" / "checkpoints")
    run_s = _labpipe(
        "run", "--taxonomy", str(taxonomy), "--base", "main", "--base-model", str(tiny), "--workdir",
        str(work / "run"), "--plain", "--param", "taxonomy_ref=contrib/tool-care-tips", "--param",
        "generation_gate=false", "--param", "critique_profile=smoke", "--param", "samples_per_skill_leaf=4",
        "--param", "training_preset=smoke", "--param", "max_questions=4", "--param", "max_new_tokens=48",
        "--param", f"questions={mt_bench}", env=env, log=work / "run.log",
    )  # fmt: skip
    [job] = [p for p in (work / "run" / "kfp").iterdir() if p.is_dir()]
    manifests = list(job.rglob("synthetic-generation*/generated/manifest.json"))  # in the ParallelFor folders
    if not manifests:
        raise SystemExit(f"the run produced no generation manifest; see {work / 'run.log'}")
    run_ids: set[str] = set()
    sent = reused = hits = 0
    for manifest in manifests:
        meta = json.loads(manifest.read_text())
        sent, reused, hits = (
            sent + meta["requests_sent"],
            reused + meta["requests_reused"],
            hits + meta["cache_hits"],
        )
        run_ids |= _request_ids(manifest.parent / "checkpoints")
    return {
        "review_s": round(review_s, 1), "run_s": round(run_s, 1), "verdict": leaf["verdict"],
        "sample_teacher_requests": leaf["sample"]["teacher_requests"], "sample_request_ids": len(sample_ids),
        "sample_ids_in_run": len(sample_ids & run_ids), "run_teacher_sent": sent, "run_teacher_reused": reused,
        "run_cache_hits": hits, "run_teacher_requests": len(run_ids),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("overlap", "laptop", "all"), default="all")
    parser.add_argument("--workdir", help="keep the laptop part's files here (default: a temporary folder)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine)")
    if args.part in ("overlap", "all"):
        for row in bench_overlap():
            print(json.dumps(row))
    if args.part in ("laptop", "all"):
        with tempfile.TemporaryDirectory(prefix="bench-review-") as tmp:
            work = Path(args.workdir or tmp)
            work.mkdir(parents=True, exist_ok=True)
            print(json.dumps(bench_laptop(work)))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
