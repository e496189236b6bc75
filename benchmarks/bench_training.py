"""Training benchmarks on CPU with the tiny model and the taxonomy-derived training sets (../shared/data).

Side by side in one run:
  1. padding efficiency and tokens/s: packed (trl bfd, padding-free) vs padded batches, same data and model;
  2. kill -9 mid-run and resume: max abs weight difference against an uninterrupted run;
  3. peak RSS of the smoke run (knowledge then skills phase, in a child process).
Usage: python benchmarks/bench_training.py [--repeats 3]
Figures go to benchmarks/RESULTS.md (section "Training"). The GPU script is bench_training_gpu.py.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from _checkout import REPO

from tests.unit.training.taxonomy_samples import write_sets

SMOKE_CHILD = """
import sys
from labpipe.training.config import TrainingConfig
from labpipe.training.stage import run_training
base, knowledge, skills, out = sys.argv[1:5]
run_training(TrainingConfig(phase="knowledge", base_model=base, data=knowledge, out=out + "/k"))
run_training(TrainingConfig(phase="skills", base_model=out + "/k/model", data=skills, out=out + "/s"))
"""

KILL_CHILD = """
import os, signal, sys
from transformers import TrainerCallback
from labpipe.training.config import TrainingConfig
from labpipe.training.stage import run_training

class KillAt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(sys.argv[4]):
            os.kill(os.getpid(), signal.SIGKILL)

run_training(TrainingConfig(phase="skills", base_model=sys.argv[1], data=sys.argv[2], out=sys.argv[3]),
             callbacks=[KillAt()])
"""


def _step_timer():
    """A TrainerCallback summing the wall time of optimizer steps (forward, backward, update; no checkpoint I/O)."""
    import time

    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        seconds = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            StepTimer.seconds += time.perf_counter() - self._start

    return StepTimer


def throughput(base: str, data: str, work: Path, repeats: int) -> dict:
    """Two epochs of the skills set (lengths 76..707 tokens), packed vs padded; best of `repeats` each.

    tokens/s = real (non-padding) tokens / summed optimizer-step time, so checkpoint writes do not count.
    """
    from labpipe.training.config import TrainingConfig
    from labpipe.training.stage import run_training

    # Same data, model, max_length, learning rate and optimizer steps per epoch (8 samples or about 8 samples'
    # worth of packed bins per step), both through run_training's real config path (the skills smoke preset
    # with these overrides) and torch's default threads.
    # - padded: packing off; trl's collator pads each micro-batch of 8 rows to its longest row (no fixed-length
    #   padding), sdpa with the padding mask; 1 micro-batch per step.
    # - packed: trl bfd packing into bins of up to max_length tokens, padding-free (one flattened row per
    #   micro-batch); without flash-attention run_training switches the model to labpipe's per-sequence sdpa
    #   (causal sdpa per packed sequence, no cross-sequence scores), so one bin per micro-batch, 4 per step.
    settings = {
        "packed": {"packing": True, "per_device_batch_size": 1, "effective_batch_size": 4},
        "padded": {"packing": False, "per_device_batch_size": 8, "effective_batch_size": 8},
    }
    best: dict[str, dict] = {}
    for i in range(repeats):  # interleaved, so both see the same machine load
        for name, over in settings.items():
            timer = _step_timer()
            summary = run_training(
                TrainingConfig(
                    phase="skills",
                    base_model=base,
                    data=data,
                    out=str(work / f"{name}-{i}"),
                    overrides={**over, "epochs": 2.0, "max_length": 768, "save_steps": 10_000},
                ),
                callbacks=[timer()],
            )
            summary["step_seconds"] = timer.seconds
            summary["tokens_per_s"] = summary["tokens"] / timer.seconds
            if name not in best or summary["tokens_per_s"] > best[name]["tokens_per_s"]:
                best[name] = summary
    keys = ("tokens", "steps", "padding_efficiency", "step_seconds", "tokens_per_s")
    runs = {name: {k: best[name][k] for k in keys} for name in settings}
    runs["speedup"] = runs["packed"]["tokens_per_s"] / runs["padded"]["tokens_per_s"]
    return runs


def kill_and_resume(base: str, data: str, work: Path) -> dict:
    from safetensors.torch import load_file

    from labpipe.training.config import TrainingConfig
    from labpipe.training.stage import run_training

    killed, straight = work / "killed", work / "straight"
    child = subprocess.run(
        [sys.executable, "-c", KILL_CHILD, base, data, str(killed), "7"], capture_output=True
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    resumed = run_training(TrainingConfig(phase="skills", base_model=base, data=data, out=str(killed)))
    run_training(TrainingConfig(phase="skills", base_model=base, data=data, out=str(straight)))
    a, b = (load_file(str(p / "model" / "model.safetensors")) for p in (killed, straight))
    return {
        "killed_at_step": 7,
        "resumed_from_step": resumed["resumed_from_step"],
        "steps": resumed["steps"],
        "max_abs_weight_diff": max((a[k] - b[k]).abs().max().item() for k in a),
    }


def smoke_peak_rss(base: str, knowledge: str, skills: str, work: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(
        [sys.executable, "-c", SMOKE_CHILD, base, knowledge, skills, str(work / "smoke")],
        check=True,
        capture_output=True,
    )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux: the largest child so far
    summary = json.loads((work / "smoke" / "s" / "training_summary.json").read_text())
    return {
        "peak_rss_mib": round(peak / 1024, 1),
        "earlier_children_mib": round(before / 1024, 1),
        "skills_steps": summary["steps"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="+", default=["smoke", "throughput", "resume"])
    parser.add_argument("--shared-data", default=str(REPO.parent / "shared" / "data"))
    args = parser.parse_args()

    from labpipe.models.tiny import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        work = Path(tmp)
        base = str(build_tiny_model(work / "tiny"))
        knowledge, skills = (
            str(p) for p in write_sets(Path(args.shared_data), work / "data", skills_replay=5)
        )
        results = {}
        if "smoke" in args.only:
            results["smoke"] = smoke_peak_rss(
                base, knowledge, skills, work
            )  # first: no earlier child inflates it
        if "throughput" in args.only:
            results["throughput"] = throughput(base, skills, work, args.repeats)
        if "resume" in args.only:
            results["resume"] = kill_and_resume(base, skills, work)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
