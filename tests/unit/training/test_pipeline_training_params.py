"""The compiled pipeline passes the training-scale parameters to both SFT tasks, and the optional per-run KFP
workspace (LABPIPE_WORKSPACE_SIZE at compile time) compiles into a workspace PVC the SFT tasks are given."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from labpipe.paths import pipelines_dir

PARAMS = {"training_nodes": 1, "training_backend": "pod", "training_runtime": "torch-distributed",
          "checkpoint_root": "", "gpus": 1}  # fmt: skip


def _spec(text: str) -> dict:
    return next(yaml.safe_load_all(text))


def _check_sft_tasks(spec: dict) -> dict:
    params = spec["root"]["inputDefinitions"]["parameters"]
    for name, default in PARAMS.items():
        assert params[name].get("defaultValue", "") == default, name
    tasks = {name: task for comp in [spec["root"], *spec["components"].values()]
             for name, task in comp.get("dag", {}).get("tasks", {}).items()}  # SFT sits in the "something to train" branch
    for task in ("sft", "sft-2"):
        inputs = tasks[task]["inputs"]["parameters"]
        for name in ("training_nodes", "training_backend", "training_runtime", "checkpoint_root", "gpus",
                     "node_selector", "tolerations", "s3_secret"):  # fmt: skip
            assert inputs[name]["componentInputParameter"] in (name, f"pipelinechannel--{name}"), (task, name)
    return tasks


def test_checked_in_pipeline_has_the_training_parameters_and_no_workspace():
    text = (pipelines_dir() / "lab_pipeline.yaml").read_text()
    tasks = _check_sft_tasks(_spec(text))
    assert tasks["sft"]["inputs"]["parameters"]["workspace"]["runtimeValue"]["constant"] == ""
    assert "{{$.workspace_path}}" not in text


def test_workspace_option_compiles_into_a_per_run_volume(tmp_path):
    out = tmp_path / "ws.yaml"
    env = {**os.environ, "LABPIPE_WORKSPACE_SIZE": "500Gi"}
    proc = subprocess.run([sys.executable, "-m", "labpipe.cli", "compile", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    docs = list(yaml.safe_load_all(out.read_text()))
    tasks = _check_sft_tasks(docs[0])
    for task in ("sft", "sft-2"):
        assert tasks[task]["inputs"]["parameters"]["workspace"]["runtimeValue"]["constant"] == "{{$.workspace_path}}"
    platform = next(d for d in docs if d and "platforms" in d)
    assert platform["platforms"]["kubernetes"]["pipelineConfig"]["workspace"]["size"] == "500Gi"
