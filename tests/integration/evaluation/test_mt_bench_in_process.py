"""The offline default: the tiny model as candidate, base and judge, in-process, with MLflow tracking.

The tiny model is random, so its answers are noise; the judge's verdicts are schema-constrained, which is
what lets a model this weak produce ratings at all. Asserted: the whole flow, files, metrics and tracking.
"""

from __future__ import annotations

import json
import shutil

from mlflow.tracking import MlflowClient

from labpipe.evaluation.fastchat_io import read_answers, read_judgments
from labpipe.evaluation.select import SelectConfig, select_checkpoint
from labpipe.evaluation.stage import EvalConfig, run_mt_bench
from labpipe.llm.options import ClientOptions
from labpipe.models.tiny import TinyModelConfig, build_tiny_model


def test_tiny_model_in_process_with_tracking(tiny_model, shared_data, tmp_path):
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    meta = run_mt_bench(
        EvalConfig(
            model=str(tiny_model),
            base_model=str(tiny_model),
            judge=ClientOptions(endpoint=str(tiny_model)),
            questions=str(shared_data / "mt_bench"),
            max_questions=3,
            max_new_tokens=8,
            out=str(tmp_path / "eval"),
            run_id="pipe-1",
            tracking_uri=tracking,
        )
    )
    assert meta["judge_mode"] == "structured" and meta["invalid"] is False and meta["excluded"] == 0
    answers = read_answers(str(tmp_path / "eval" / "model_answer" / "candidate.jsonl"))
    assert [a.question_id for a in answers] == [81, 91, 101]  # writing, roleplay, reasoning
    judgments = read_judgments(str(tmp_path / "eval" / "model_judgment" / "tiny_single.jsonl"))
    assert len(judgments) == 12 and all(1 <= j.score <= 10 for j in judgments)
    assert all("Rating: [[" in j.judgment for j in judgments)
    assert {j.judge[1] for j in judgments if j.question_id == 101} == {
        "single-math-v1",
        "single-math-v1-multi-turn",
    }
    assert 1 <= meta["candidate.overall"] <= 10

    run = MlflowClient(tracking_uri=tracking).get_run(meta["mlflow_run_id"])
    assert run.data.metrics["mt_bench.candidate.overall"] == meta["candidate.overall"]
    assert run.data.params["judge_mode"] == "structured"
    names = {a.path for a in MlflowClient(tracking_uri=tracking).list_artifacts(run.info.run_id, "mt_bench")}
    assert {"mt_bench/report.html", "mt_bench/report.md", "mt_bench/metrics.json"} <= names


def test_checkpoint_selection_best_and_last(tiny_model, shared_data, tmp_path):
    train_out = tmp_path / "train"
    shutil.copytree(tiny_model, train_out / "checkpoints" / "checkpoint-5")
    build_tiny_model(train_out / "checkpoints" / "checkpoint-10", TinyModelConfig(seed=1))
    shutil.copytree(tiny_model, train_out / "model")
    judge_cfg = EvalConfig(
        model="",
        judge=ClientOptions(endpoint=str(tiny_model)),
        out="",
        questions=str(shared_data / "mt_bench"),
        max_questions=2,
        max_new_tokens=8,
    )

    last = select_checkpoint(
        SelectConfig(
            model_dir=str(train_out),
            out=str(tmp_path / "last"),
            eval=judge_cfg,
            strategy="last",
            include_final=False,
        )
    )
    assert last["selected"].endswith("checkpoints/checkpoint-10") and last["scores"] == {}

    best = select_checkpoint(
        SelectConfig(model_dir=str(train_out), out=str(tmp_path / "best"), eval=judge_cfg, steps=[5, 10])
    )
    assert set(best["scores"]) == {"checkpoint-5", "checkpoint-10", "model"}
    top = max(best["scores"].values())
    assert best["scores"][best["name"]] == top
    assert json.loads((tmp_path / "best" / "selection.json").read_text()) == best
    assert (tmp_path / "best" / "checkpoint-5" / "metrics.json").exists()
