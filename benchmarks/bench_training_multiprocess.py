"""Training tokens/s on CPU: 2 processes (torchrun, gloo DDP) vs 1, same data, model and effective batch.

Report only: the point of multi-process training is correctness here (tests/integration/training/
test_multiprocess.py) and speed on GPUs. Runs `labpipe train` as the pipeline does, alternating 1 and 2 processes
`--repeats` times, and reads tokens and the trainer's train_runtime from training_summary.json.
Usage: python benchmarks/bench_training_multiprocess.py [--repeats 2] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _checkout import REPO

from tests.unit.training.taxonomy_samples import write_sets


def train(base: Path, data: Path, out: Path, nproc: int, epochs: float) -> dict:
    cmd = [sys.executable, "-m", "labpipe.cli", "train", "--phase", "skills", "--model", str(base), "--data",
           str(data), "--out", str(out), "--nproc-per-node", str(nproc), "--overrides",
           json.dumps({"epochs": epochs, "save_steps": 1000, "logging_steps": 1000})]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads((out / "training_summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=float, default=3.0)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    root = Path(tempfile.mkdtemp(prefix="bench-mp-"))
    os.environ["LABPIPE_CACHE"] = str(root / "cache")
    from labpipe.models.tiny import build_tiny_model

    shared = Path(os.environ.get("LABPIPE_SHARED_DATA", REPO.parent / "shared" / "data"))
    _, skills = write_sets(shared, root / "data", skills_replay=5)
    base = build_tiny_model(root / "tiny")
    print("| run | processes | steps | tokens | train s | tokens/s | ratio 2/1 |")
    print("|---|---|---|---|---|---|---|")
    for r in range(args.repeats):
        rates = {}
        for nproc in (1, 2):
            s = train(base, skills, root / f"r{r}-p{nproc}", nproc, args.epochs)
            rates[nproc] = s["tokens"] / s["train_seconds"]
            ratio = f"{rates[2] / rates[1]:.2f}x" if nproc == 2 else "-"
            print(f"| {r + 1} | {nproc} | {s['steps']} | {s['tokens']} | {s['train_seconds']:.1f} | "
                  f"{rates[nproc]:,.0f} | {ratio} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
