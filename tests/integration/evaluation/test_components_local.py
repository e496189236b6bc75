"""mt_bench_eval -> dsl.If -> publish_model under kfp.local, on the tiny model, with an MLflow SQLite store.

No `from __future__ import annotations` here: kfp reads the component annotations as real types.
"""

import json

import pytest
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_eval_gate_publish_under_kfp_local(tmp_path, tiny_model, shared_data):
    from kfp import compiler, dsl, local
    from kfp.dsl import Model, Output
    from labpipe.components.mt_bench_eval.component import mt_bench_eval
    from labpipe.components.publish_model.component import publish_model

    @dsl.component
    def model_from(src: str, model: Output[Model]):
        import shutil

        shutil.copytree(src, model.path)

    @dsl.pipeline
    def evaluate(model_dir: str, questions: str, tracking_uri: str):
        candidate = model_from(src=model_dir)
        ev = mt_bench_eval(
            candidate=candidate.outputs["model"],
            base_model=model_dir,
            judge=model_dir,
            judge_model="",
            judge_secret="",
            questions=questions,
            max_questions=2,
            production_model_name="labpipe-tiny",
            tolerance=0.0,
            run_id="kfp-local-eval",
            tracking_uri=tracking_uri,
            max_new_tokens=16,
        )
        with dsl.If(ev.outputs["Output"] == True):  # noqa: E712 - a KFP condition, not a Python comparison
            publish_model(
                candidate=candidate.outputs["model"],
                decision=ev.outputs["decision"],
                production_model_name="labpipe-tiny",
                run_id="kfp-local-eval",
                tracking_uri=tracking_uri,
            )

    compiler.Compiler().compile(evaluate, str(tmp_path / "evaluate.yaml"))
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    evaluate(model_dir=str(tiny_model), questions=str(shared_data / "mt_bench"), tracking_uri=tracking)

    decision = json.loads(next((tmp_path / "root").glob("*/mt-bench-eval/decision")).read_text())
    assert decision["publish"] is True  # the same model as candidate and base: equal passes at tolerance 0
    assert decision["candidate"] == decision["base"]
    html = next((tmp_path / "root").glob("*/mt-bench-eval/report")).read_text()
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html
    version = MlflowClient(tracking_uri=tracking).get_model_version_by_alias("labpipe-tiny", "production")
    assert str(version.version) == "1" and float(version.tags["mt_bench.overall"]) == decision["candidate"]
