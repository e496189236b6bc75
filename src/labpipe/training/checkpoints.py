"""Checkpoint directories: visible only when complete, keep-last-K, and the one to resume from.

Layout under a training run's output directory `out`:
    out/.trainer/checkpoint-<step>/   where the trainer writes (staging; cleared on start)
    out/checkpoints/checkpoint-<step>/  complete checkpoints only (moved in by one atomic rename)
    out/model/                          the final model, written when training completes
    out/training_summary.json           written last; its presence means the run is complete
Each checkpoint holds HF safetensors weights, tokenizer + chat template, optimizer, scheduler, RNG state,
trainer_state.json and token_counts.json (token accounting across resumes).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

CHECKPOINTS = "checkpoints"
STAGING = ".trainer"
MODEL = "model"
SUMMARY = "training_summary.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dirs(out: str | Path) -> list[Path]:
    """Complete checkpoints, oldest step first."""
    root = Path(out) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(out: str | Path) -> Path | None:
    dirs = checkpoint_dirs(out)
    return dirs[-1] if dirs else None


def clear_staging(out: str | Path) -> None:
    """Remove what a killed run left half-written."""
    shutil.rmtree(Path(out) / STAGING, ignore_errors=True)


def publish(staged: str | Path, out: str | Path, keep_last: int) -> Path:
    """Move a finished checkpoint from staging into checkpoints/ (one rename), then drop all but the last K."""
    staged = Path(staged)
    root = Path(out) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    dest = root / staged.name
    if dest.exists():  # the same step saved twice (step and epoch boundary coincide): keep the newer
        shutil.rmtree(dest)
    os.replace(staged, dest)
    for old in checkpoint_dirs(out)[:-keep_last]:
        # Rename first so a reader never sees a half-deleted checkpoint under its real name.
        doomed = old.with_name(f".deleting-{old.name}")
        os.replace(old, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    return dest
