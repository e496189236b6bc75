"""`review_pipeline` (pipelines/review_pipeline.py) compiles and runs through kfp.local (the real component in a
subprocess), and the replies its sample paid for land in the shared generation cache: the following run's
generation and critique (the LAB pipeline's own components, in `generation_pipeline`, its data half) send
none of the sample's requests again. Teacher and judge: the fake OpenAI-compatible server, which records
every request it receives (the point is what labpipe sends, not data quality)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.support.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.integration
GOOD = "compositional_skills/writing/freeform/tool_care_tips"
BRANCH = "contrib/tool-care-tips"


def test_review_pipeline_compiles(tmp_path):
    from labpipe.cli import main

    assert main(["review", "--compile", str(tmp_path / "review.yaml")]) == 0  # what a curator uploads
    spec, platform = yaml.safe_load_all((tmp_path / "review.yaml").read_text())
    assert spec["pipelineInfo"]["name"] == "lab-review"
    assert {"taxonomy", "ref", "base", "generation_cache"} <= set(
        spec["root"]["inputDefinitions"]["parameters"]
    )
    [executor] = spec["deploymentSpec"]["executors"].values()
    assert executor["container"]["image"].startswith("quay.io/labpipe/labpipe-evaluation")
    secrets = json.dumps(platform)  # the weekly run's secrets: teacher, judge, S3, git (kfp-kubernetes)
    for name in (
        "teacher_secret",
        "judge_secret",
        "s3_secret",
        "taxonomy_secret",
        "labpipe-mlflow",
        "labpipe-ca",
    ):
        assert name in secrets, name


def _one_leaf_branch(taxonomy: Path, tmp_path: Path) -> None:
    """A contribution of the good leaf only (what a curator merges after the review)."""
    from labpipe.taxonomy.sample import BRANCHES_DIR, add_branch, sample_taxonomy_source

    files = tmp_path / "files"
    shutil.copytree(sample_taxonomy_source() / BRANCHES_DIR / "contrib-new-leaves" / GOOD, files / GOOD)
    add_branch(taxonomy, BRANCH, files, "Add tool care tips")


def _run(root: Path, pipeline, **arguments) -> list:
    from kfp import local
    from labpipe.pipelines.runner import collect_artifacts

    root.mkdir(parents=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    pipeline(**arguments)
    [job] = [p for p in root.iterdir() if p.is_dir()]
    return collect_artifacts(job)


def test_review_pipeline_replies_are_reused_by_the_following_run(
    tmp_path, monkeypatch, tiny_model, shared_data
):
    from labpipe.pipelines.lab_pipeline import generation_pipeline
    from labpipe.pipelines.review_pipeline import review_pipeline

    from labpipe.taxonomy.sample import prepare_sample_taxonomy

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    taxonomy = prepare_sample_taxonomy(tmp_path / "sample")
    _one_leaf_branch(taxonomy, tmp_path)
    cache = str(tmp_path / "generation-cache")
    with FakeOpenAIServer() as server:
        common = dict(taxonomy=str(taxonomy), teacher=server.base_url, teacher_model=server.model,
                      judge=server.base_url, judge_model=server.model, generation_gate=False,
                      critique_profile="smoke", seed=42, generation_cache=cache, response_format="json_schema")  # fmt: skip
        reviewed = _run(tmp_path / "review", review_pipeline, ref=BRANCH, base="main", base_model=str(tiny_model),
                        questions=str(shared_data / "mt_bench"), **common)  # fmt: skip
        sample = [r for r in server.requests if "response_format" in r]  # flows' requests (the judge's: none)
        server.reset_counters()
        _run(tmp_path / "run", generation_pipeline, taxonomy_ref=BRANCH, base="main", **common)
        following = list(server.requests)

    [result] = [a for a in reviewed if a.name == "result"]
    doc = json.loads((Path(result.uri) / "review.json").read_text())
    [leaf] = doc["leaves"]
    assert leaf["leaf_id"] == GOOD and leaf["verdict"] == "pass", leaf["reasons"]
    assert [a for a in reviewed if a.name == "page"] and [a for a in reviewed if a.name == "summary"]
    sent = leaf["sample"]["teacher_requests_sent"] + leaf["sample"]["judge_requests_sent"]
    assert len(sample) == sent > 0
    key = lambda r: json.dumps([r["messages"], r.get("response_format"), r.get("seed")], sort_keys=True)  # noqa: E731
    assert {key(r) for r in following}.isdisjoint({key(r) for r in sample})  # 0 sample requests sent again
    assert following  # the run pays only for what the sample did not cover
