"""The compiled pipeline passes the training-scale parameters to both SFT tasks, and the optional per-run KFP
workspace (LABPIPE_WORKSPACE_SIZE at compile time) compiles into a workspace PVC the SFT tasks are given."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from tests.support.compiled import compiled_text

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
                     "node_selector", "tolerations"):  # fmt: skip
            assert inputs[name]["componentInputParameter"] in (name, f"pipelinechannel--{name}"), (task, name)
        # the data connection is one fixed secret for every task (labpipe.runconfig.S3_SECRET), not a parameter
        assert inputs["s3_secret"]["runtimeValue"]["constant"] == "labpipe-s3", task
    return tasks


def test_checked_in_pipeline_has_the_training_parameters_and_no_workspace():
    text = compiled_text()
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


def test_the_launcher_pod_is_light_in_job_mode():
    """The sft-resources task's library call: training resources in pod mode; no GPU, no GPU node selector and
    small requests when a TrainJob / PyTorchJob trains (the launcher only submits and follows it)."""
    from labpipe.training.task import LAUNCHER_RESOURCES, launcher_resources

    training = ("8", "16", "64Gi", "128Gi", {"nvidia.com/gpu.product": "H100"})
    pod = launcher_resources("pod", 1, 4, *training)
    assert pod == {"gpus": 4, "cpu_request": "8", "cpu_limit": "16", "memory_request": "64Gi",
                   "memory_limit": "128Gi", "node_selector": {"nvidia.com/gpu.product": "H100"}}
    for backend, nodes in (("trainjob", 1), ("pytorchjob", 2), ("pod", 3)):
        job = launcher_resources(backend, nodes, 8, *training)
        assert job == {"gpus": 0, **LAUNCHER_RESOURCES, "node_selector": {}}, (backend, nodes)


def test_job_settings_that_cannot_work_are_user_errors(tmp_path):
    import pytest

    from labpipe.errors import UserError
    from labpipe.training.task import SftTaskConfig, check

    cfg = SftTaskConfig(phase="skills", base_model="s3://b/m", data="d", out=str(tmp_path / "o"), training_nodes=2,
                        checkpoint_root="s3://b/c", queue_name="GPU Queue", deadline_minutes=-5)  # fmt: skip
    with pytest.raises(UserError) as err:
        check(cfg)
    assert {p.field for p in err.value.problems} == {"queue_name", "training_deadline_minutes"}
