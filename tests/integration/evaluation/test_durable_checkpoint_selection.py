"""checkpoint_selection with a slim Model artifact: the training output holds model/ and training_summary.json,
whose `checkpoint_dir` names the durable location (a real moto S3 endpoint here). Selection fetches only the
checkpoints the summary lists, scores them, and records the chosen one by its S3 URI; publish resolves it."""

from __future__ import annotations

import json
import shutil

import pytest

from labpipe.evaluation.candidate import CandidateEvalConfig, evaluate_candidate, published_model_dir
from labpipe.evaluation.select import SelectConfig, select_checkpoint
from labpipe.evaluation.stage import EvalConfig
from labpipe.llm.options import ClientOptions
from labpipe.models.tiny import TinyModelConfig, build_tiny_model
from labpipe.training import checkpoints

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture
def slim_output(s3_env, tmp_path, tiny_model):
    from labpipe import storage

    bucket = f"ckpt-{tmp_path.name.lower().replace('_', '-')}"[:60]
    storage.s3_client().create_bucket(Bucket=bucket)
    durable = f"s3://{bucket}/labpipe/run-7/skills"
    shutil.copytree(tiny_model, tmp_path / "local" / "checkpoint-2")
    build_tiny_model(tmp_path / "local" / "checkpoint-4", TinyModelConfig(seed=1))
    shutil.copytree(tiny_model, tmp_path / "local" / "checkpoint-1")  # pruned before the end: not in the summary
    for step in (1, 2, 4):
        checkpoints.push(tmp_path / "local" / f"checkpoint-{step}", durable, keep_last=3)
    out = tmp_path / "skills-out"
    shutil.copytree(tiny_model, out / "model")
    summary = {"phase": "skills", "checkpoint_dir": durable, "checkpoints": ["checkpoint-2", "checkpoint-4"]}
    (out / checkpoints.SUMMARY).write_text(json.dumps(summary))
    return out, durable


def test_last_checkpoint_is_read_from_the_durable_location(slim_output, tmp_path, tiny_model, shared_data):
    out, durable = slim_output
    selection = select_checkpoint(SelectConfig(
        model_dir=str(out), out=str(tmp_path / "sel"), strategy="last", include_final=False,
        eval=EvalConfig(model="", judge=ClientOptions(str(tiny_model)), out="", questions=str(shared_data / "mt_bench")),
    ))  # fmt: skip
    assert selection["selected"] == f"{durable}/checkpoints/checkpoint-4"
    local = checkpoints.mirror_dir(durable) / "checkpoints"
    assert selection["selected_local"] == str(local / "checkpoint-4")
    assert sorted(p.name for p in local.iterdir()) == ["checkpoint-2", "checkpoint-4"]  # not checkpoint-1


def test_best_scores_durable_checkpoints_and_publish_resolves_the_uri(slim_output, tmp_path, tiny_model,
                                                                      shared_data):
    out, durable = slim_output
    decision_path = tmp_path / "decision.json"
    result = evaluate_candidate(CandidateEvalConfig(
        training_out=str(out), decision_out=str(decision_path), base_model=str(tiny_model),
        judge=ClientOptions(str(tiny_model)), questions=str(shared_data / "mt_bench"), max_questions=1, max_new_tokens=8,
        checkpoint_selection="best", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    ))  # fmt: skip
    decision = json.loads(decision_path.read_text())
    assert decision["candidate_subpath"] == result.selected
    assert result.selected in {"model", f"{durable}/checkpoints/checkpoint-2", f"{durable}/checkpoints/checkpoint-4"}
    scored = checkpoints.mirror_dir(durable) / "checkpoints"  # both listed checkpoints were fetched and scored
    assert sorted(p.name for p in scored.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    expected = str(out / "model") if result.selected == "model" else result.selected
    assert published_model_dir(str(out), str(decision_path)) == expected


def test_checkpoints_in_a_location_this_pod_cannot_see_are_a_user_error(tmp_path, tiny_model, shared_data):
    from labpipe.errors import UserError

    out = tmp_path / "skills-out"
    shutil.copytree(tiny_model, out / "model")
    summary = {"checkpoint_dir": str(tmp_path / "other-pod" / "checkpoints" / "r" / "skills"),
               "checkpoints": ["checkpoint-2"]}  # fmt: skip
    (out / checkpoints.SUMMARY).write_text(json.dumps(summary))
    with pytest.raises(UserError, match="set the pipeline parameter checkpoint_root to an s3:// prefix"):
        select_checkpoint(SelectConfig(model_dir=str(out), out=str(tmp_path / "sel"), strategy="best",
                                       eval=EvalConfig(model="", judge=ClientOptions(str(tiny_model)), out="")))  # fmt: skip
