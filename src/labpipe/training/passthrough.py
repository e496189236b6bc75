"""A knowledge phase with nothing to learn passes its base model through unchanged.

A taxonomy change that touches only skills leaves yields an empty knowledge set: LAB's knowledge phase
then has no work, and the skills phase starts from the base model. The output keeps the training
layout (`<out>/model/`, `<out>/training_summary.json`) so the next phase and lineage read it as usual.
Only the knowledge phase may be skipped: an empty skills set is an upstream error (critique stops the
pipeline before training), never a reason to publish an untrained model.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

from labpipe import storage
from labpipe.models.loading import resolve_model_dir
from labpipe.training import checkpoints
from labpipe.training.config import TrainingConfig


def has_rows(uri: str) -> bool:
    return any(line.strip() for line in storage.read_text(uri).splitlines())


def skip_empty_knowledge_phase(config: TrainingConfig) -> dict[str, Any] | None:
    """The summary of a skipped phase when `config` is a knowledge phase with no data; else None."""
    if config.phase != "knowledge" or has_rows(config.data):
        return None
    base = resolve_model_dir(config.base_model)  # a path, s3://, or a previous phase's output
    summary = {
        "phase": config.phase,
        "skipped": True,
        "reason": "no knowledge data (the change touches no knowledge leaf)",
        "base_model": config.base_model,
        "preset": config.preset,
        "steps": 0,
        "samples": 0,
        "model_subpath": checkpoints.MODEL,
    }
    with storage.atomic_dir(config.out) as tmp:
        shutil.copytree(base, tmp / checkpoints.MODEL)
        (tmp / checkpoints.SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
