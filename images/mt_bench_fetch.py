"""Bake FastChat's MT-Bench data into the evaluation image (run by Containerfile.evaluation at build time).

Every file is checked against the sha256 pinned in labpipe.evaluation.sources (the one list of the pinned
files and their checksums): a wrong or altered copy fails the build.
Usage: python mt_bench_fetch.py OUT_DIR [SOURCE_DIR]   (no SOURCE_DIR: FastChat's pinned commit on GitHub)
"""

import sys
from pathlib import Path

from labpipe.evaluation import sources

out = Path(sys.argv[1])
src = sys.argv[2] if len(sys.argv) > 2 else ""
for pinned in (sources.QUESTIONS, sources.JUDGE_PROMPTS, sources.REFERENCE_ANSWERS):
    data, digest = sources.fetch(f"{src}/{pinned.name}" if src else pinned.url, pinned, verify=True)
    (out / pinned.name).parent.mkdir(parents=True, exist_ok=True)
    (out / pinned.name).write_bytes(data)
    print(f"MT-Bench {pinned.name}: sha256 {digest} (FastChat {sources.FASTCHAT_COMMIT[:10]})")
