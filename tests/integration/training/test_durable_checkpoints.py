"""Durable checkpoints on S3 (a real moto server over HTTP): a training process killed with SIGKILL after step 5,
rerun as a retried pod would be (a fresh output directory and a fresh local cache), resumes from the last
checkpoint on S3 and ends with the same weights as an uninterrupted run. The output holds only the final model
and the summary (the slim Model artifact); the checkpoints stay in the durable location."""

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

pytestmark = [pytest.mark.slow, pytest.mark.integration]

KILL_AT = 5  # smoke preset: 6 steps, saves at 2, 3 (epoch end), 4, 6; keeps 2 -> 3 and 4 on S3 at the kill
CHILD = """
import os, signal, sys
from transformers import TrainerCallback
from labpipe.training.config import TrainingConfig
from labpipe.training.stage import run_training

class KillAt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(sys.argv[5]):
            os.kill(os.getpid(), signal.SIGKILL)

run_training(TrainingConfig(phase="knowledge", base_model=sys.argv[1], data=sys.argv[2], out=sys.argv[3],
                            checkpoint_dir=sys.argv[4]), callbacks=[KillAt()])
"""


@pytest.fixture()
def s3(s3_env):
    """The session's moto S3 endpoint (tests/integration/conftest.py) with the bucket this file uses."""
    from labpipe.storage import s3_client

    s3_client().create_bucket(Bucket="ckpt")  # idempotent in us-east-1
    return "ckpt"


def test_killed_run_resumes_from_s3_in_a_fresh_pod(s3, monkeypatch, tmp_path, tiny_model, training_sets):
    data = str(training_sets[0])
    durable = checkpoints.default_location("s3://ckpt/labpipe", "run-1", "knowledge")
    assert durable == "s3://ckpt/labpipe/run-1/knowledge"

    monkeypatch.setenv("LABPIPE_CACHE", str(tmp_path / "pod-1-cache"))
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(tiny_model), data, str(tmp_path / "pod-1-out"), durable, str(KILL_AT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert checkpoints.remote_checkpoints(durable) == ["checkpoint-3", "checkpoint-4"]
    assert not (tmp_path / "pod-1-out" / "model").exists()

    monkeypatch.setenv("LABPIPE_CACHE", str(tmp_path / "pod-2-cache"))  # the retried pod starts from nothing
    resumed = run_training(
        TrainingConfig(phase="knowledge", base_model=str(tiny_model), data=data, out=str(tmp_path / "pod-2-out"),
                       checkpoint_dir=durable)  # fmt: skip
    )
    straight = run_training(
        TrainingConfig(phase="knowledge", base_model=str(tiny_model), data=data, out=str(tmp_path / "straight"))
    )
    assert resumed["resumed_from_step"] == 4 and resumed["steps"] == straight["steps"] == 6
    assert max_weight_diff(tmp_path / "pod-2-out", tmp_path / "straight") <= 1e-5
    assert resumed["final_loss"] == pytest.approx(straight["final_loss"], abs=1e-5)
    assert resumed["tokens"] == straight["tokens"]

    # the slim artifact: final model + summary only; the checkpoints are on S3, recorded in the summary
    out = tmp_path / "pod-2-out"
    assert sorted(p.name for p in out.iterdir() if p.name != ".labpipe-output") == ["model", checkpoints.SUMMARY]
    assert resumed["checkpoint_dir"] == durable and resumed["checkpoints"] == ["checkpoint-4", "checkpoint-6"]
    assert checkpoints.remote_checkpoints(durable) == ["checkpoint-4", "checkpoint-6"]
    assert json.loads((out / checkpoints.SUMMARY).read_text()) == resumed


def test_an_s3_checkpoint_without_its_marker_is_not_resumed_from(s3, monkeypatch, tmp_path, tiny_model):
    import shutil

    from labpipe import storage

    monkeypatch.setenv("LABPIPE_CACHE", str(tmp_path / "cache"))
    durable = "s3://ckpt/labpipe/run-2/skills"
    storage.upload_dir(tiny_model, f"{durable}/checkpoints/checkpoint-8")  # an upload cut off before its marker
    assert checkpoints.remote_checkpoints(durable) == []
    assert checkpoints.pull_latest(durable) is None
    done = shutil.copytree(tiny_model, tmp_path / "checkpoint-6")
    checkpoints.push(done, durable, keep_last=2)
    assert checkpoints.remote_checkpoints(durable) == ["checkpoint-6"]
    pulled = checkpoints.pull_latest(durable)
    assert pulled.name == "checkpoint-6" and not (pulled / checkpoints.COMPLETE).exists()
    assert storage.sha256_file(pulled / "model.safetensors") == storage.sha256_file(done / "model.safetensors")


def test_default_location_without_a_checkpoint_root(tmp_path, monkeypatch):
    monkeypatch.setenv("LABPIPE_CACHE", str(tmp_path / "cache"))
    assert checkpoints.default_location("", "r1", "skills") == str(tmp_path / "cache" / "checkpoints" / "r1" / "skills")
    workspace = tmp_path / "kfp-workspace"
    workspace.mkdir()
    assert checkpoints.default_location("", "r1", "skills", workspace=str(workspace)) == str(
        workspace / "checkpoints" / "skills"
    )
    assert checkpoints.default_location("/data/ckpt", "r1", "skills") == "/data/ckpt/r1/skills"
