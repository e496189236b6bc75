"""`labpipe train` from the command line (also under `accelerate launch`), and a base model from S3 (moto)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import resources

import pytest

from labpipe.errors import UserError
from labpipe.training.config import TrainingConfig
from labpipe.training.stage import run_training

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_accelerate_launch_single_process_cpu(tmp_path, tiny_model, training_sets):
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    config = resources.files("labpipe.training") / "accelerate" / "cpu.yaml"
    out = tmp_path / "out"
    cmd = [
        accelerate,
        "launch",
        "--config_file",
        str(config),
        "-m",
        "labpipe.cli",
        "train",
        "--phase",
        "skills",
        "--model",
        str(tiny_model),
        "--data",
        str(training_sets[1]),
        "--out",
        str(out),
        "--max-steps",
        "2",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"steps": 2' in proc.stdout
    assert (out / "model" / "model.safetensors").exists()


def test_cli_reports_user_errors_without_traceback(tmp_path, tiny_model, training_sets):
    cmd = [
        sys.executable,
        "-m",
        "labpipe.cli",
        "train",
        "--phase",
        "knowledge",
        "--model",
        str(tiny_model),
        "--data",
        str(training_sets[0]),
        "--out",
        str(tmp_path / "out"),
        "--replay",
        str(training_sets[0]),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "error: replay [replay]: --replay applies to the skills phase only" in proc.stderr


@pytest.fixture()
def s3(s3_env):
    """The session's moto S3 endpoint (tests/integration/conftest.py) with the bucket this file uses."""
    from labpipe.storage import s3_client

    s3_client().create_bucket(Bucket="models")  # idempotent in us-east-1
    return "models"


def test_base_model_from_s3_and_output_to_s3(s3, tmp_path, tiny_model, training_sets):
    from labpipe import storage

    storage.upload_dir(tiny_model, "s3://models/tiny")
    summary = run_training(
        TrainingConfig(
            phase="knowledge",
            base_model="s3://models/tiny",
            data=str(training_sets[0]),
            out="s3://models/runs/k",
            overrides={"max_steps": 1},
        )
    )
    assert summary["steps"] == 1 and summary["base_model"] == "s3://models/tiny"
    local = storage.download_dir("s3://models/runs/k/model", tmp_path / "model")
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(local)
    assert storage.exists("s3://models/runs/k/training_summary.json")


def test_a_base_model_uri_that_does_not_exist(s3, tmp_path, training_sets):
    with pytest.raises(UserError, match="no objects under this prefix"):
        run_training(
            TrainingConfig(
                phase="knowledge",
                base_model="s3://models/missing",
                data=str(training_sets[0]),
                out=str(tmp_path / "out"),
            )
        )
    assert not (tmp_path / "out").exists()
