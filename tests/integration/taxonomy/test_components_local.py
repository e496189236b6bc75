"""taxonomy_diff -> seed_extraction as KFP components under kfp.local, on the sample taxonomy, with MLflow.

No `from __future__ import annotations` here: kfp reads the component annotations as real types.
"""

import json

import pytest

pytestmark = [pytest.mark.integration]


def test_taxonomy_components_under_kfp_local(tmp_path):
    from kfp import dsl, local
    from labpipe.components.seed_extraction.component import seed_extraction
    from labpipe.components.taxonomy_diff.component import taxonomy_diff
    from mlflow.tracking import MlflowClient

    from labpipe.taxonomy.sample import prepare_sample_taxonomy

    taxonomy = prepare_sample_taxonomy(tmp_path / "sample")
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"

    @dsl.pipeline
    def taxonomy_stages(taxonomy: str, tracking_uri: str):
        diff = taxonomy_diff(
            taxonomy=taxonomy,
            taxonomy_ref="",
            base="empty",
            run_id="kfp-local-test",
            tracking_uri=tracking_uri,
        )
        seed_extraction(
            diff=diff.outputs["diff"],
            tokenizer="",
            chunk_tokens=120,
            run_id="kfp-local-test",
            tracking_uri=tracking_uri,
        )

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    taxonomy_stages(taxonomy=str(taxonomy), tracking_uri=tracking)

    diff_dir = next((tmp_path / "root").glob("*/taxonomy-diff/diff"))
    seeds = next((tmp_path / "root").glob("*/seed-extraction/seeds"))
    doc = json.loads((diff_dir / "diff.json").read_text())
    assert doc["counts"]["added"] == 3 and doc["base_used"] == "empty" and len(doc["head_commit"]) == 40
    records = [json.loads(line) for line in seeds.read_text().splitlines()]
    assert sorted(r["kind"] for r in records) == ["freeform_skill", "grounded_skill", "knowledge"]
    knowledge = next(r for r in records if r["kind"] == "knowledge")
    assert len(knowledge["chunks"]) > 1 and all(c["n_tokens"] <= 120 for c in knowledge["chunks"])

    client = MlflowClient(tracking_uri=tracking)
    runs = client.search_runs([client.get_experiment_by_name("labpipe").experiment_id])
    stages = {r.data.tags.get("labpipe.stage"): r for r in runs if r.data.tags.get("labpipe.role") == "stage"}
    assert set(stages) == {"taxonomy_diff", "seed_extraction"}
    assert stages["seed_extraction"].data.metrics["records"] == 3
    assert stages["taxonomy_diff"].data.params["taxonomy_commit"] == doc["head_commit"]
    parents = {r.data.tags["mlflow.parentRunId"] for r in stages.values()}
    assert len(parents) == 1  # both nested under one pipeline run
