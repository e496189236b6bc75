"""The shard plan: balanced by planned requests, large knowledge leaves split by chunk, every unit of work
in exactly one shard, and the shards' records merged back (the kfp.local run of the fan-out is in
tests/integration/pipeline/test_generation_fan_out.py)."""

from __future__ import annotations

import json

import pytest

from labpipe.errors import UserError
from labpipe.generation.flow import load_flows, start_items
from labpipe.generation.shards import make_plan, merge_generated, requests_per_item, select
from tests.unit.critique.fixtures import SEEDS


def _records(knowledge_chunks: int = 0) -> list[dict]:
    records = [json.loads(line) for line in SEEDS.read_text().splitlines() if line.strip()]
    if knowledge_chunks:
        for rec in records:
            if rec["kind"] == "knowledge":
                rec["chunks"] = [
                    {"text": f"chunk {i} text", "chunk_id": f"c{i}"} for i in range(knowledge_chunks)
                ]
    return records


def test_requests_per_item_follows_the_flow():
    flows = load_flows()
    assert requests_per_item(flows["knowledge"]) == 1  # one qa request per chunk x context
    # freeform: 6 question requests, 6 x 5 questions judged, 30 answered
    assert requests_per_item(flows["freeform_skill"]) == 6 + 30 + 30


def test_one_shard_is_everything():
    records = _records()
    plan = make_plan(records, 1)
    assert len(plan["shards"]) == 1
    assert select(records, plan, 0) == records


def test_a_large_knowledge_leaf_is_split_by_chunk_and_every_item_is_in_one_shard():
    records = _records(knowledge_chunks=120)  # 120 chunks x 2 contexts = 240 requests: the largest leaf
    plan = make_plan(records, 3)
    assert len(plan["shards"]) == 3
    loads = [s["planned_requests"] for s in plan["shards"]]
    assert max(loads) - min(loads) <= 66, loads  # within one skill leaf of each other
    flows = load_flows()
    everything = {i["id"] for r in records for i in start_items(flows[r["kind"]], r)}
    seen: list[str] = []
    for shard in range(3):
        for rec in select(records, plan, shard):
            seen += [i["id"] for i in start_items(flows[rec["kind"]], rec)]
    assert sorted(seen) == sorted(everything)  # no starting item lost or doubled
    knowledge_parts = [p for s in plan["shards"] for p in s["parts"] if p["chunks"] is not None]
    assert len(knowledge_parts) >= 2  # the knowledge leaf went to several shards


def test_more_shards_than_work_gives_fewer_shards():
    plan = make_plan(_records(), 50)
    assert len(plan["shards"]) == 5  # three skill leaves + the knowledge leaf's two chunks
    with pytest.raises(UserError):
        make_plan(_records(), 0)
    with pytest.raises(UserError):
        select(_records(), plan, 5)


def test_merge_sums_split_leaf_counts_and_keeps_a_record_once():
    step = {"step": "qa", "in": 2, "requests": 2, "out": 3, "dropped": {"x": 1}}
    a = (
        [{"leaf_id": "k", "id": "1"}, {"leaf_id": "k", "id": "2"}],
        {"per_leaf": {"k": {"records": 2, "steps": [step]}}},
    )
    b = (
        [{"leaf_id": "k", "id": "2"}, {"leaf_id": "k", "id": "3"}],
        {"per_leaf": {"k": {"records": 2, "steps": [step]}}},
    )
    records, manifest = merge_generated([a, b])
    assert [r["id"] for r in records] == ["1", "2", "3"]
    merged = manifest["per_leaf"]["k"]["steps"][0]
    assert merged["in"] == 4 and merged["out"] == 6 and merged["dropped"] == {"x": 2}
    assert step["in"] == 2  # the inputs are not modified
