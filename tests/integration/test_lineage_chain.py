"""Lineage end to end against a real `mlflow server`: each stage's record() (as the components call it)
on real files, the publish step registering the approved model with its provenance (and, optionally, in
a Kubeflow Model Registry: a local fake of its REST API, tests/support/fake_model_registry.py), then the
chain read back by `labpipe lineage MODEL|RUN` from every kind of reference."""

from __future__ import annotations

import json
import uuid

import pytest
from mlflow.tracking import MlflowClient

from labpipe import storage
from labpipe.cli import main
from labpipe.registry.publish import publish_model
from labpipe.runs import lineage, tracking
from tests.support.fake_model_registry import FakeModelRegistry

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LEAVES = ["knowledge/science/physics", "compositional_skills/writing/haiku"]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _simulate_stages(tmp_path, uri: str, pid: str) -> dict[str, str]:
    """Every stage as the components run it: a nested stage run, then record() with its artifacts."""
    diff = tmp_path / "diff"
    diff.mkdir()
    (diff / "diff.json").write_text(json.dumps({"head_commit": COMMIT, "leaves": [
        {"leaf_id": leaf, "status": "added"} for leaf in LEAVES] + [{"leaf_id": "old/leaf", "status": "deleted"}]}))
    seeds = _write_jsonl(tmp_path / "seeds.jsonl", [{"leaf_id": leaf} for leaf in LEAVES])
    generated = tmp_path / "generated"
    generated.mkdir()
    _write_jsonl(generated / "generated.jsonl", [{"id": i} for i in range(10)])
    knowledge_set = _write_jsonl(tmp_path / "knowledge.jsonl", [{"messages": [{"role": "user", "content": "k"}]}])
    skills_set = _write_jsonl(tmp_path / "skills.jsonl", [{"messages": [{"role": "user", "content": "s"}]}])
    k_model, s_model = tmp_path / "knowledge-out", tmp_path / "skills-out"
    steps = [
        ("taxonomy_diff", {"leaves": 2, "taxonomy_commit": COMMIT, "base": "production", "base_used": "f" * 40,
                           "merge_base": "f" * 40},
         {"taxonomy": "https://git.example/taxonomy.git", "taxonomy_ref": "", "base": "production"},
         {"diff": str(diff)}),
        ("seed_extraction", {"records": 2}, {"diff": str(diff), "tokenizer": "s3://models/granite"},
         {"seeds": seeds}),
        ("synthetic_generation", {"records": 10, "requests_sent": 7, "requests_cached": 23}, {"seeds": seeds},
         {"generated": str(generated)}),
        ("critique_filter", {"generated": 10, "kept": 8, "yield": 0.8}, {"generated": str(generated)},
         {"knowledge_set": knowledge_set, "skills_set": skills_set, "report": str(tmp_path / "r.md")}),
        ("knowledge_sft", {"steps": 5}, {"base": "s3://models/granite", "data": knowledge_set},
         {"model": str(k_model)}),
        ("skills_sft", {"steps": 6}, {"base": str(k_model), "data": skills_set}, {"model": str(s_model)}),
        ("mt_bench_eval", {"candidate": "candidate", "base": "base", "candidate.overall": 6.5, "base.overall": 5.25,
                           "questions_sha256": "9" * 64, "publish": True,
                           "reasons": ["candidate 6.500 beats base 5.250 (tolerance 0)"],
                           "candidate_subpath": "checkpoints/checkpoint-6"},
         {"candidate": str(s_model), "base_model": "s3://models/granite", "questions": ""}, {}),
    ]
    for stage, meta, inputs, outputs in steps:
        with tracking.stage_run(stage, pipeline_run_id=pid, tracking_uri=uri):
            pass
        lineage.record(stage, meta, pipeline_run_id=pid, tracking_uri=uri, inputs=inputs, outputs=outputs)
    return {"knowledge_set": knowledge_set, "skills_set": skills_set, "seeds": seeds}


@pytest.fixture
def published(tmp_path, mlflow_server_url, monkeypatch):
    pid = f"kfp-{uuid.uuid4().hex[:8]}"
    name = f"labpipe-model-{uuid.uuid4().hex[:6]}"
    paths = _simulate_stages(tmp_path, mlflow_server_url, pid)
    decision = {"publish": True, "reasons": ["candidate 6.500 beats base 5.250 (tolerance 0)"], "candidate": 6.5,
                "base": 5.25, "production": None, "candidate_scores": {"overall": 6.5, "turn1": 7, "turn2": 6},
                "judge": "judge-model", "questions_sha256": "9" * 64, "candidate_subpath": "checkpoints/checkpoint-6"}
    decision_path = tmp_path / "decision.json"
    decision_path.write_text(json.dumps(decision))
    monkeypatch.setenv("LABPIPE_MODEL_REGISTRY_TOKEN", "mr-token")
    with FakeModelRegistry(token="mr-token") as registry:
        version = publish_model(
            str(tmp_path / "local-view-of-the-artifact"), str(decision_path), name, run_id=pid,
            tracking_uri=mlflow_server_url, source_uri="s3://pipelines/lab/42/sft-2/model/checkpoints/checkpoint-6",
            pipeline_run_name="weekly-2026-12-01", model_registry=registry.url,
        )
        lineage.record("publish_model", {"registered_model": name, "version": version, "alias": "production"},
                       pipeline_run_id=pid, tracking_uri=mlflow_server_url, inputs={"candidate": "s3://x"})
    return {"pid": pid, "name": name, "version": version, "registry": registry, "paths": paths}


def test_registered_version_has_the_s3_source_and_provenance(published, mlflow_server_url):
    client = MlflowClient(tracking_uri=mlflow_server_url)
    mv = client.get_model_version(published["name"], published["version"])
    assert mv.source == "s3://pipelines/lab/42/sft-2/model/checkpoints/checkpoint-6"  # no second copy
    tags = mv.tags
    assert tags["labpipe.pipeline_run_id"] == published["pid"]
    assert tags["labpipe.pipeline_run_name"] == "weekly-2026-12-01"
    assert tags["labpipe.taxonomy.repo"] == "https://git.example/taxonomy.git"
    assert tags["labpipe.taxonomy.commit"] == COMMIT
    assert tags["labpipe.taxonomy.base"] == "production" and tags["labpipe.taxonomy.base_used"] == "f" * 40
    assert tags["labpipe.base_model"] == "s3://models/granite"
    assert tags["labpipe.data.knowledge_set.sha256"] == storage.sha256_file(published["paths"]["knowledge_set"])
    assert tags["labpipe.data.seeds.sha256"] == storage.sha256_file(published["paths"]["seeds"])
    assert tags["labpipe.gate.publish"] == "True" and "beats base" in tags["labpipe.gate.reasons"]
    assert tags["mt_bench.overall"] == "6.5" and tags["mt_bench.base"] == "5.25"
    assert tags["labpipe.generation.requests_sent"] == "7"


def test_model_registry_gets_the_same_uri_and_provenance(published):
    registry = published["registry"]
    assert all(h.get("Authorization") == "Bearer mr-token" for h in registry.headers)
    [model] = registry.models.values()
    assert model["name"] == published["name"]
    [version] = registry.versions.values()
    assert version["name"] == published["version"] and version["registeredModelId"] == model["id"]
    props = {k: v["string_value"] for k, v in version["customProperties"].items()}
    assert props["labpipe.taxonomy.commit"] == COMMIT and props["labpipe.pipeline_run_id"] == published["pid"]
    assert props["mt_bench.overall"] == "6.5"
    [artifact] = registry.artifacts.values()
    assert artifact["uri"] == "s3://pipelines/lab/42/sft-2/model/checkpoints/checkpoint-6"
    assert artifact["modelFormatName"] == "vLLM"


def test_every_stage_run_has_its_datasets_with_digests(published, mlflow_server_url):
    lin = lineage.describe(mlflow_server_url, pipeline_run_id=published["pid"])
    datasets = {stage: {(d["name"], d["context"]) for d in run["datasets"]} for stage, run in lin.stage_runs.items()}
    assert datasets["taxonomy_diff"] == {("taxonomy", "input"), ("diff", "output")}
    assert datasets["seed_extraction"] == {("diff", "input"), ("seeds", "output")}
    assert datasets["synthetic_generation"] == {("seeds", "input"), ("generated", "output")}
    assert datasets["critique_filter"] == {("generated", "input"), ("knowledge_set", "output"),
                                           ("skills_set", "output")}
    assert datasets["knowledge_sft"] == {("knowledge_set", "training")}
    assert datasets["skill_sft"] == {("skills_set", "training")}  # one name: skills_sft was recorded
    assert datasets["mt_bench_eval"] == {("questions", "evaluation")}
    # the same dataset has the same digest where it is written and where it is read
    digests = {(s, d["name"]): d["digest"] for s, run in lin.stage_runs.items() for d in run["datasets"]}
    assert digests[("seed_extraction", "seeds")] == digests[("synthetic_generation", "seeds")]
    assert digests[("critique_filter", "skills_set")] == digests[("skill_sft", "skills_set")]
    assert digests[("mt_bench_eval", "questions")] == "9" * 32
    assert digests[("taxonomy_diff", "taxonomy")] == COMMIT[:32]


@pytest.mark.parametrize("kind", ["alias", "models_uri", "mlflow_run", "pipeline_run", "old_flag"])
def test_lineage_prints_the_chain_from_any_reference(published, mlflow_server_url, capsys, kind):
    client = MlflowClient(tracking_uri=mlflow_server_url)
    name, version = published["name"], published["version"]
    target = {
        "alias": [f"{name}@production"],
        "models_uri": [f"models:/{name}/{version}"],
        "mlflow_run": [client.get_model_version(name, version).run_id],
        "pipeline_run": [published["pid"]],
        "old_flag": ["--pipeline-run", published["pid"]],
    }[kind]
    assert main(["lineage", *target, "--tracking-uri", mlflow_server_url]) == 0
    out = capsys.readouterr().out
    # strip(): in the whole suite something earlier leaves 4 spaces unflushed on stdout before the header line
    steps = [line[4:].split("  ")[0] for line in out.strip().splitlines() if line.startswith(("    ", " -> "))]
    assert steps == ["taxonomy", "changed leaves", "seeds", "generated", "kept", "training sets",
                     "knowledge model", "skills model", "MT-Bench", "gate", "registered"]
    assert f"https://git.example/taxonomy.git@{COMMIT[:12]}, diffed against production" in out
    assert "2 leaves: knowledge/science/physics, compositional_skills/writing/haiku, old/leaf (deleted)" in out
    assert "requests sent 7, reused 23" in out
    assert "8 of 10 (yield 80%)" in out
    assert "chosen checkpoint checkpoints/checkpoint-6" in out
    assert "base 5.25, candidate 6.50" in out
    assert "publish: candidate 6.500 beats base 5.250" in out
    assert f"{name} version {version} (aliases: production)" in out
    assert "skills_sft" not in out


def test_lineage_json_exposes_the_chain(published, mlflow_server_url, capsys):
    assert main(["lineage", published["pid"], "--json", "--tracking-uri", mlflow_server_url]) == 0
    doc = json.loads(capsys.readouterr().out)
    steps = {s["step"]: s for s in doc["chain"]}
    assert list(steps) == lineage.CHAIN_STEPS
    assert all(s["recorded"] for s in steps.values())
    assert steps["generated"]["data"]["requests_reused"] == 23
    assert steps["registered"]["data"]["versions"][0]["aliases"] == ["production"]


def test_unknown_reference_is_a_user_error(mlflow_server_url, capsys):
    assert main(["lineage", "no-such-pipeline-run", "--tracking-uri", mlflow_server_url]) == 1
    err = capsys.readouterr().err
    assert "no MLflow record" in err and "Traceback" not in err
    assert main(["lineage", "nope@production", "--tracking-uri", mlflow_server_url]) == 1
    assert "not found in the model registry" in capsys.readouterr().err
