"""Taxonomy benchmarks, each against a baseline run side by side in this script.

1. validate: a 2,000-leaf taxonomy generated from the sample leaves. labpipe's one-pass validation
   (lint + schema + attribution, all leaves) vs InstructLab's way, a `yamllint -f parsable -c CONFIG -s FILE`
   subprocess per file (lint only; measured on --yamllint-sample files and scaled per file, since 2,000
   subprocesses take minutes).
2. diff: `labpipe taxonomy diff` (a CLI subprocess, Python start-up included) on a repository with 2,000
   leaves and 500 commits, vs a per-file baseline (one `git diff --quiet` per leaf).

    python benchmarks/bench_taxonomy.py [--leaves 2000] [--commits 500] [--yamllint-sample 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from labpipe.taxonomy.sample import sample_taxonomy_source
from labpipe.taxonomy.validate import find_leaf_files, validate_taxonomy

INSTRUCTLAB_YAMLLINT = "extends: relaxed\nrules:\n  line-length:\n    max: 120\n"
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "b",
    "GIT_AUTHOR_EMAIL": "b@b",
    "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@b",
}


def sample_leaves() -> list[tuple[str, str, str]]:
    src = sample_taxonomy_source()
    paths, _ = find_leaf_files(src)
    return [(p, (src / p).read_text(), (src / p).with_name("attribution.txt").read_text()) for p in paths]


def make_taxonomy(root: Path, n: int) -> list[str]:
    leaves = sample_leaves()
    made = []
    for i in range(n):
        rel, text, attribution = leaves[i % len(leaves)]
        area, rest = rel.split("/", 1)
        leaf = root / area / f"group_{i // 100:02d}" / f"leaf_{i:04d}"
        leaf.mkdir(parents=True)
        (leaf / "qna.yaml").write_text(text.replace("created_by: labpipe-sample", f"created_by: author{i}"))
        (leaf / "attribution.txt").write_text(attribution)
        made.append(str(leaf / "qna.yaml"))
    return made


def bench_validate(n: int, sample: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "taxonomy"
        files = make_taxonomy(root, n)
        start = time.perf_counter()
        report = validate_taxonomy(root)
        ours = time.perf_counter() - start
        assert report.checked == n and not report.errors, report.errors[:3]
        config = Path(tmp) / "yamllint.yaml"
        config.write_text(INSTRUCTLAB_YAMLLINT)
        yamllint = shutil.which("yamllint") or "yamllint"
        start = time.perf_counter()
        for f in files[:sample]:
            subprocess.run(
                [yamllint, "-f", "parsable", "-c", str(config), f, "-s"], check=True, capture_output=True
            )
        per_file = (time.perf_counter() - start) / sample
    return {
        "leaves": n,
        "labpipe_s": ours,
        "yamllint_per_file_s": per_file,
        "yamllint_s": per_file * n,
        "speedup": per_file * n / ours,
    }


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True, text=True
    ).stdout


def make_history(repo: Path, n: int, commits: int) -> None:
    """n leaves written over `commits` commits; main stops half way, the feature branch goes on."""
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    files = make_taxonomy(repo / "stage", n)
    per_commit = max(1, n // commits)
    rels = [Path(f).relative_to(repo / "stage") for f in files]
    for c in range(commits):
        if c == commits // 2:
            git(repo, "checkout", "-q", "-b", "feature")
        batch = rels[c * per_commit : (c + 1) * per_commit] if c < commits - 1 else rels[c * per_commit :]
        for rel in batch:
            for name in ("qna.yaml", "attribution.txt"):
                (repo / rel.parent).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(repo / "stage" / rel.parent / name, repo / rel.parent / name)
        if c % 7 == 3 and c > commits // 2:  # some edits of leaves that exist on main
            leaf = repo / rels[c % (n // 2)]
            leaf.write_text(leaf.read_text().replace("version: 3", "version: 3\n# edited"))
        git(repo, "add", "-A", "--", ":!stage")
        git(repo, "commit", "-q", "-m", f"commit {c}")
    shutil.rmtree(repo / "stage")


def bench_diff(n: int, commits: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "taxonomy"
        make_history(repo, n, commits)
        assert int(git(repo, "rev-list", "--count", "HEAD")) == commits
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "labpipe.cli", "taxonomy", "diff", "--base", "main"],
            cwd=repo,
            capture_output=True,
            text=True,
        )
        ours = time.perf_counter() - start
        assert out.returncode == 0, out.stderr[-2000:]
        changed = sum(1 for line in out.stdout.splitlines() if line.endswith("qna.yaml"))
        start = time.perf_counter()
        merge_base = git(repo, "merge-base", "HEAD", "main").strip()
        leaves = git(repo, "ls-files", "*/qna.yaml").split()
        base_changed = sum(
            subprocess.run(["git", "diff", "--quiet", merge_base, "--", f], cwd=repo).returncode == 1
            for f in leaves
        )
        baseline = time.perf_counter() - start
        assert base_changed == changed, (base_changed, changed)
    return {
        "leaves": n,
        "commits": commits,
        "changed": changed,
        "labpipe_cli_s": ours,
        "per_file_git_s": baseline,
        "speedup": baseline / ours,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=2000)
    parser.add_argument("--commits", type=int, default=500)
    parser.add_argument("--yamllint-sample", type=int, default=200)
    args = parser.parse_args()
    v = bench_validate(args.leaves, args.yamllint_sample)
    print(
        f"validate {v['leaves']} leaves: labpipe {v['labpipe_s']:.2f} s; yamllint subprocess per file "
        f"{v['yamllint_per_file_s'] * 1000:.0f} ms x {v['leaves']} = {v['yamllint_s']:.1f} s "
        f"(measured on {args.yamllint_sample} files); speed-up {v['speedup']:.0f}x"
    )
    d = bench_diff(args.leaves, args.commits)
    print(
        f"diff {d['leaves']} leaves / {d['commits']} commits ({d['changed']} changed): labpipe CLI "
        f"{d['labpipe_cli_s']:.2f} s; per-file git diff {d['per_file_git_s']:.1f} s; speed-up {d['speedup']:.0f}x"
    )


if __name__ == "__main__":
    main()
