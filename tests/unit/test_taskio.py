"""labpipe.taskio: what a component does around its stage call (artifact metadata, lineage inputs/outputs)."""

from __future__ import annotations

from types import SimpleNamespace

from labpipe import taskio


def _artifact(uri: str) -> SimpleNamespace:
    return SimpleNamespace(uri=uri, metadata={})


def test_finish_puts_metadata_on_outputs_and_records_lineage_by_uri(monkeypatch):
    recorded = {}
    monkeypatch.setattr(
        "labpipe.runs.lineage.record", lambda stage, meta, **kw: recorded.update(stage=stage, **kw)
    )
    seeds, generated = _artifact("s3://b/seeds"), _artifact("s3://b/gen")
    meta = {"records": 3}
    assert (
        taskio.finish(
            "synthetic_generation",
            meta,
            run_id="r",
            tracking_uri="u",
            inputs={"seeds": seeds, "shard_plan": None, "ref": "main"},
            outputs={"generated": generated},
        )
        == meta
    )
    assert generated.metadata == meta
    assert recorded == {
        "stage": "synthetic_generation",
        "pipeline_run_id": "r",
        "tracking_uri": "u",
        "inputs": {"seeds": "s3://b/seeds", "ref": "main"},
        "outputs": {"generated": "s3://b/gen"},
    }


def test_critique_metadata_splits_over_its_outputs(monkeypatch):
    monkeypatch.setattr("labpipe.runs.lineage.record", lambda *a, **kw: None)
    outs = {name: _artifact(f"/{name}") for name in ("knowledge_set", "skills_set", "report")}
    meta = {"knowledge_records": 1, "kept": 5, "skills_records": 2, "knowledge_replay": 1, "dropped": 7}
    taskio.finish(
        "critique_filter",
        meta,
        run_id="r",
        tracking_uri="",
        inputs={"generated": [_artifact("/a"), _artifact("/b")]},
        outputs=outs,
    )
    assert outs["knowledge_set"].metadata == {"knowledge_records": 1, "kept": 5, "knowledge_replay": 1}
    assert outs["skills_set"].metadata == {"skills_records": 2, "knowledge_replay": 1}
    assert outs["report"].metadata == meta
