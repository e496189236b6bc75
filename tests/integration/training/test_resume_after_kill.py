"""A training process killed with SIGKILL mid-run resumes from its last complete checkpoint and ends with the
same weights as an uninterrupted run (optimizer, scheduler, RNG and data position restored)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from labpipe.training import checkpoints
from labpipe.training.config import TrainingConfig
from labpipe.training.stage import run_training
from tests.support.weights import max_weight_diff

pytestmark = pytest.mark.slow

# Runs one knowledge phase in a child process that SIGKILLs itself right after optimizer step KILL_AT: no
# cleanup, no atexit, exactly what `kill -9` does. Smoke preset: 6 steps, 3 per epoch, saves every 2 steps and
# at each epoch end, keeps 2, so checkpoints 3 and 4 exist and step 5 is lost; the resume crosses the middle of
# epoch 2.
KILL_AT = 5
CHILD = """
import os, signal, sys
from transformers import TrainerCallback
from labpipe.training.config import TrainingConfig
from labpipe.training.stage import run_training

class KillAt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(sys.argv[4]):
            os.kill(os.getpid(), signal.SIGKILL)

run_training(TrainingConfig(phase="knowledge", base_model=sys.argv[1], data=sys.argv[2], out=sys.argv[3]),
             callbacks=[KillAt()])
"""


def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path, tiny_model, training_sets):
    knowledge = str(training_sets[0])
    killed = tmp_path / "killed"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(tiny_model), knowledge, str(killed), str(KILL_AT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert not (killed / "model").exists() and not (killed / checkpoints.SUMMARY).exists()
    assert [p.name for p in checkpoints.checkpoint_dirs(killed)] == ["checkpoint-3", "checkpoint-4"]

    resumed = run_training(
        TrainingConfig(phase="knowledge", base_model=str(tiny_model), data=knowledge, out=str(killed))
    )
    straight = run_training(
        TrainingConfig(
            phase="knowledge", base_model=str(tiny_model), data=knowledge, out=str(tmp_path / "straight")
        )
    )
    assert resumed["resumed_from_step"] == 4 and resumed["steps"] == straight["steps"] == 6
    assert max_weight_diff(killed, tmp_path / "straight") <= 1e-5
    assert resumed["final_loss"] == pytest.approx(straight["final_loss"], abs=1e-5)
    assert resumed["tokens"] == straight["tokens"]  # token accounting survives the kill
    assert json.loads((killed / checkpoints.SUMMARY).read_text())["resumed_from_step"] == 4
