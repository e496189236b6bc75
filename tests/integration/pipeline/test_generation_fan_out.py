"""The generation fan-out through kfp.local: the real components and the DAG's ParallelFor/Collected wiring
(pipelines/lab_pipeline.py `generation_pipeline`, the data half of the LAB pipeline), on the sample
taxonomy, with the fake OpenAI-compatible server as teacher and judge. Three shards give exactly the
training sets of one shard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.integration


def _run(root: Path, taxonomy: Path, url: str, shards: int) -> list:
    from kfp import local
    from labpipe.pipelines.lab_pipeline import generation_pipeline
    from labpipe.pipelines.runner import collect_artifacts

    root.mkdir(parents=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    generation_pipeline(
        taxonomy=str(taxonomy), base="empty", teacher=url, judge=url, chunk_tokens=200,
        generation_shards=shards, generation_gate=False, concurrency=4, critique_profile="smoke",
        samples_per_skill_leaf=5, seed=7, generation_cache="off",  # each run pays for its own requests
        response_format="json_schema",  # no per-shard structured-output probe: the counts are the flows' requests
    )  # fmt: skip
    [job] = [p for p in root.iterdir() if p.is_dir()]
    return collect_artifacts(job)


def _one(artifacts: list, task: str, name: str):
    [found] = [a for a in artifacts if a.task == task and a.name == name]
    return found


def test_three_shards_give_the_one_shard_training_sets(tmp_path, monkeypatch):
    from labpipe.taxonomy.sample import prepare_sample_taxonomy

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    taxonomy = prepare_sample_taxonomy(tmp_path / "sample")
    with FakeOpenAIServer() as server:
        one = _run(tmp_path / "one", taxonomy, server.base_url, 1)
        sent_one = server.total_requests
        server.reset_counters()
        three = _run(tmp_path / "three", taxonomy, server.base_url, 3)
        sent_three = server.total_requests
    gen_one = [a for a in one if a.name == "generated"]
    gen_three = [a for a in three if a.name == "generated"]
    assert len(gen_one) == 1 and len(gen_three) == 3
    plan = json.loads(Path(_one(three, "seed-extraction", "shard_plan").uri).read_text())
    assert len(plan["shards"]) == 3
    sizes = [sum(1 for _ in open(a.uri + "/generated.jsonl")) for a in gen_three]
    assert all(sizes), sizes  # every shard did work
    assert sum(sizes) == sum(1 for _ in open(gen_one[0].uri + "/generated.jsonl"))
    assert sent_three == sent_one  # the shards together send exactly the one-shard requests
    for name in ("knowledge_set", "skills_set"):
        a = Path(_one(one, "critique-filter", name).uri)
        b = Path(_one(three, "critique-filter", name).uri)
        assert a.read_bytes() == b.read_bytes() and a.stat().st_size > 0, name
