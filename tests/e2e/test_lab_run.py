"""`labpipe run` end to end: the real DAG through kfp.local on the sample taxonomy with the tiny model
(teacher, judge and base), a local MLflow store, every stage a real subprocess."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from labpipe.cli import main
from labpipe.runs import lineage, tracking

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory, shared_data):
    import os

    workdir = tmp_path_factory.mktemp("lab-run")
    old = dict(os.environ)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        # MT-Bench data from ../shared (offline); everything else is `labpipe run`'s own default
        rc = main(["run", "--workdir", str(workdir), "--param", f"questions={shared_data / 'mt_bench'}"])
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert rc == 0
    return workdir


def _artifacts(workdir):
    from labpipe.pipelines.runner import collect_artifacts

    [job] = [p for p in (workdir / "kfp").iterdir() if p.is_dir()]
    return {(a.task, a.name): a for a in collect_artifacts(job)}


def test_every_stage_produced_its_artifacts(lab_run):
    arts = _artifacts(lab_run)
    tasks = {task for task, _ in arts}
    # sft is knowledge SFT, sft-2 skill SFT (two tasks of the one sft component)
    for task in ("taxonomy-diff", "seed-extraction", "synthetic-generation", "critique-filter",
                 "sft", "sft-2", "mt-bench-eval"):
        assert task in tasks, f"{task} produced no artifact; got {sorted(tasks)}"
    seeds = arts[("seed-extraction", "seeds")]
    records = [json.loads(line) for line in open(seeds.uri)]
    assert {r["kind"] for r in records} == {"knowledge", "freeform_skill", "grounded_skill"}
    for name in ("knowledge_set", "skills_set"):
        path = arts[("critique-filter", name)].uri
        assert sum(1 for _ in open(path)) > 0, f"{name} is empty"


def test_trained_model_loads_and_differs_from_base(lab_run, tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    arts = _artifacts(lab_run)
    model_dir = arts[("sft-2", "model")].uri
    from pathlib import Path

    candidates = [Path(model_dir) / "model", Path(model_dir)]
    path = next(p for p in candidates if (p / "config.json").exists())
    trained = AutoModelForCausalLM.from_pretrained(path)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)  # the run's base: the same seed, the same weights
    diffs = [(a - b).abs().max().item() for a, b in zip(trained.parameters(), base.parameters(), strict=True)]
    assert max(diffs) > 0
    assert all(torch.isfinite(p).all() for p in trained.parameters())


def test_mlflow_has_one_pipeline_run_with_nested_stage_runs_and_lineage(lab_run):
    uri = f"sqlite:///{lab_run / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(tracking.DEFAULT_EXPERIMENT)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get(tracking.ROLE_TAG) == "pipeline"]
    assert len(parents) == 1
    stages = {r.data.tags.get("labpipe.stage") for r in runs if r.data.tags.get("mlflow.parentRunId")}
    assert len(stages) >= 6, stages
    info = lineage.describe(uri, pipeline_run_id=parents[0].data.tags[tracking.PIPELINE_RUN_TAG])
    for stage in ("taxonomy_diff", "seed_extraction", "synthetic_generation", "critique_filter",
                  "knowledge_sft", "skill_sft", "mt_bench_eval"):
        assert stage in info.stages, f"no lineage recorded for {stage}"
    assert info.stages["taxonomy_diff"]["metadata.taxonomy_commit"]
    assert info.stages["skill_sft"]["inputs.base"] == info.stages["knowledge_sft"]["outputs.model"]
    if "publish_model" in info.stages:  # the gate passed: lineage answers from the registered model too
        by_model = lineage.describe(uri, model="labpipe-model@production")
        assert by_model.pipeline_run_id == info.pipeline_run_id


def test_gate_decision_and_report_exist(lab_run):
    arts = _artifacts(lab_run)
    decision = json.loads(open(arts[("mt-bench-eval", "decision")].uri).read())
    assert "publish" in decision and decision.get("reasons")
    report = arts[("mt-bench-eval", "report")].uri
    assert open(report).read().strip()


def test_lineage_chain_datasets_and_closed_parent(lab_run):
    uri = f"sqlite:///{lab_run / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(tracking.DEFAULT_EXPERIMENT)
    [parent] = client.search_runs([exp.experiment_id], filter_string=f"tags.`{tracking.ROLE_TAG}` = 'pipeline'")
    assert parent.info.status == "FINISHED" and parent.data.tags["labpipe.status"] == "SUCCEEDED"
    info = lineage.describe(uri, pipeline_run_id=parent.data.tags[tracking.PIPELINE_RUN_TAG])
    assert "skills_sft" not in info.stage_runs  # one name per stage: skill_sft
    contexts = {stage: {(d["name"], d["context"]) for d in run["datasets"]} for stage, run in info.stage_runs.items()}
    assert {("taxonomy", "input"), ("diff", "output")} <= contexts["taxonomy_diff"]
    assert {("diff", "input"), ("seeds", "output")} <= contexts["seed_extraction"]
    assert {("seeds", "input"), ("generated", "output")} <= contexts["synthetic_generation"]
    assert {("knowledge_set", "output"), ("skills_set", "output")} <= contexts["critique_filter"]
    assert ("knowledge_set", "training") in contexts["knowledge_sft"]
    assert ("skills_set", "training") in contexts["skill_sft"]
    assert ("questions", "evaluation") in contexts["mt_bench_eval"]
    steps = {s["step"]: s for s in lineage.chain(info)}
    for step in lineage.CHAIN_STEPS[:-1]:  # "registered" only when the gate passed
        assert steps[step]["recorded"], step
    assert len(steps["changed_leaves"]["data"]["leaf_ids"]) == 3
    assert steps["seeds"]["data"]["sha256"] and steps["training_sets"]["data"]["skills_set"]["sha256"]
    if steps["gate"]["data"]["publish"]:
        assert main(["lineage", "labpipe-model@production", "--tracking-uri", uri]) == 0
        mv = client.get_model_version_by_alias("labpipe-model", "production")
        assert mv.tags["labpipe.taxonomy.commit"] == info.stages["taxonomy_diff"]["metadata.taxonomy_commit"]
        assert mv.tags["labpipe.data.skills_set.sha256"] == steps["training_sets"]["data"]["skills_set"]["sha256"]
