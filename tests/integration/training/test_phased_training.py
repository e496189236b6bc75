"""Knowledge SFT then skill SFT on the tiny model: loss falls, weights change, checkpoints reload, metrics logged."""

from __future__ import annotations

import json

import pytest
import torch

from labpipe.storage import sha256_file
from labpipe.training import checkpoints
from tests.support.weights import max_weight_diff

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("phase", ["knowledge", "skills"])
def test_loss_falls_and_parameters_change(phased_run, phase):
    summary = phased_run["summaries"][phase]
    assert summary["final_loss"] < summary["first_loss"] - 0.2
    before = phased_run["base"] if phase == "knowledge" else phased_run["knowledge"] / "model"
    assert max_weight_diff(before, phased_run[phase] / "model") > 1e-3


def test_summary_is_the_artifact_metadata(phased_run, training_sets):
    knowledge, skills = phased_run["summaries"]["knowledge"], phased_run["summaries"]["skills"]
    assert json.loads((phased_run["skills"] / checkpoints.SUMMARY).read_text()) == skills
    assert knowledge["data_sha256"] == {str(training_sets[0]): sha256_file(training_sets[0])}
    assert skills["base_model"] == str(phased_run["knowledge"] / "model")
    assert skills["replay_samples"] == 5  # the critique stage's replay rows, none added
    for s in (knowledge, skills):
        assert s["padding_efficiency"] >= 0.95  # packed, padding-free batches
        assert s["tokens"] >= s["trained_tokens"] > 0 and s["steps"] > 0 and s["resumed_from_step"] == 0
    # assistant-only loss in the skills phase trains far fewer of its tokens than unmasked knowledge
    assert skills["trained_tokens"] / skills["tokens"] < knowledge["trained_tokens"] / knowledge["tokens"]


@pytest.mark.parametrize("phase", ["knowledge", "skills"])
def test_checkpoints_are_complete_hf_models_keep_last_k(phased_run, phase):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = phased_run[phase]
    dirs = checkpoints.checkpoint_dirs(out)
    assert [d.name for d in dirs][-1] == f"checkpoint-{phased_run['summaries'][phase]['steps']}"
    assert len(dirs) == 2  # smoke keep_last
    assert not (out / checkpoints.STAGING).exists()
    for path in [*dirs, out / "model"]:
        model = AutoModelForCausalLM.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )["input_ids"]
        with torch.no_grad():
            assert torch.isfinite(model(ids).logits).all()
    assert max_weight_diff(dirs[-1], out / "model") == 0


def test_per_step_metrics_reach_mlflow(phased_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=phased_run["tracking_uri"])
    runs = client.search_runs(
        [client.get_experiment_by_name("labpipe").experiment_id],
        filter_string="tags.`labpipe.stage` = 'skill_sft'",  # one name per stage everywhere
    )
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["labpipe.pipeline_run_id"] == "phased-test"
    steps = phased_run["summaries"]["skills"]["steps"]
    for key in ("loss", "learning_rate", "grad_norm", "tokens_per_s", "padding_efficiency"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == list(range(1, steps + 1)), key
    assert run.data.params["phase.learning_rate"] == "0.002"


def test_rerunning_a_finished_phase_changes_nothing(phased_run, training_sets):
    from labpipe.training.config import TrainingConfig
    from labpipe.training.stage import run_training

    out = phased_run["knowledge"]
    before = (out / "model" / "model.safetensors").stat().st_mtime_ns
    again = run_training(
        TrainingConfig(
            phase="knowledge", base_model=str(phased_run["base"]), data=str(training_sets[0]), out=str(out)
        )
    )
    assert again == phased_run["summaries"]["knowledge"]
    assert (out / "model" / "model.safetensors").stat().st_mtime_ns == before
