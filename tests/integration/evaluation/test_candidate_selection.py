"""The pipeline's evaluation step: checkpoint selection feeds MT-Bench and the gate, and the publish
step resolves the approved checkpoint from the decision (tiny model in-process, SQLite MLflow)."""

from __future__ import annotations

import json
import shutil

import pytest

from labpipe.errors import UserError
from labpipe.evaluation.candidate import CandidateEvalConfig, evaluate_candidate, published_model_dir
from labpipe.llm.options import ClientOptions

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture
def training_out(tmp_path, tiny_model):
    out = tmp_path / "skills-out"  # the training layout: model/ and checkpoints/checkpoint-<step>/
    for sub in ("model", "checkpoints/checkpoint-2", "checkpoints/checkpoint-4"):
        shutil.copytree(tiny_model, out / sub)
    return out


@pytest.mark.parametrize("strategy", ["last", "best"])
def test_selected_checkpoint_is_evaluated_gated_and_published(training_out, tiny_model, shared_data, tmp_path,
                                                              strategy):
    decision_path = tmp_path / "decision.json"
    result = evaluate_candidate(CandidateEvalConfig(
        training_out=str(training_out), decision_out=str(decision_path), base_model=str(tiny_model),
        judge=ClientOptions(str(tiny_model)), questions=str(shared_data / "mt_bench"), max_questions=1, max_new_tokens=8,
        checkpoint_selection=strategy, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    ))
    decision = json.loads(decision_path.read_text())
    assert decision["checkpoint_selection"] == strategy
    if strategy == "last":
        assert result.selected == "model"
    else:  # identical weights everywhere: the tie goes to the later step, the final model
        assert result.selected in {"model", "checkpoints/checkpoint-4"}
    assert decision["candidate_subpath"] == result.selected and "publish" in decision
    # the publish step, in another pod, resolves the same checkpoint in its own copy of the artifact
    copy = tmp_path / "other-pod-copy"
    shutil.copytree(training_out, copy)
    assert published_model_dir(str(copy), str(decision_path)) == str(copy / result.selected)


def test_unknown_selection_strategy_is_a_user_error(training_out, tmp_path):
    with pytest.raises(UserError, match="checkpoint_selection must be one of best, last"):
        evaluate_candidate(CandidateEvalConfig(training_out=str(training_out), decision_out=str(tmp_path / "d"),
                                               judge=ClientOptions("x"), checkpoint_selection="first"))
