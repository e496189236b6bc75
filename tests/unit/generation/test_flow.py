"""Flows and prompts: every shipped one loads, renders and runs; bad flow files get located errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labpipe.errors import UserError
from labpipe.generation.flow import (
    FLOWS_DIR,
    PROMPTS_DIR,
    apply,
    load_flow,
    load_flows,
    plan,
    render,
    start_items,
)
from labpipe.llm.types import ChatResult
from tests.unit.critique.fixtures import SEEDS, ScriptedClient, instance

RECORDS = [json.loads(line) for line in SEEDS.read_text().splitlines()]


def test_shipped_flows_cover_every_kind_and_every_prompt():
    flows = load_flows()
    assert set(flows) == {"knowledge", "freeform_skill", "grounded_skill", "foundational_skill"}
    used = {s.prompt for f in flows.values() for s in f.steps}
    shipped = {p.relative_to(PROMPTS_DIR).as_posix() for p in PROMPTS_DIR.rglob("*.jinja")}
    assert used == shipped, f"prompts not used by any flow: {shipped - used}"


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r["kind"])
def test_every_step_of_every_flow_renders_and_runs(record):
    """Walk each flow step by step with schema-valid replies; each prompt shows the item's content."""
    flow = load_flows()[record["kind"]]
    items = start_items(flow, record)
    client = ScriptedClient()
    for step in flow.steps:
        planned = plan(flow, step, items)
        assert len(planned) == len(items) * step.fan_out
        for item, req in planned:
            text = req.messages[-1]["content"]
            assert "{{" not in text and "{%" not in text
            shown = ("question", "answer") if step.is_judge else ("question", "context", "chunk")
            shown = ("question",) if step.name == "question_quality" else shown
            for key in shown:
                if item.get(key):
                    assert item[key].strip()[:40] in text, (step.name, key)
            assert req.schema == step.schema and req.request_id
        results = {r.request_id: r for r in client.complete([r for _, r in planned])}
        outcome = apply(step, planned, results)
        assert outcome.items and not outcome.dropped
        items = outcome.items
    for item in items:
        assert item["question"] and item["answer"]
        assert set(item["scores"]) == {s.name for s in flow.steps if s.is_judge}


def test_knowledge_starts_from_each_chunk_times_each_seed_context():
    rec = next(r for r in RECORDS if r["kind"] == "knowledge")
    items = start_items(load_flows()["knowledge"], rec)
    contexts = {ex["context"] for ex in rec["seed_examples"]}
    assert len(items) == len(rec["chunks"]) * len(contexts)
    assert {(i["chunk_id"], i["seed_context"]) for i in items} == {
        (c["chunk_id"], x) for c in rec["chunks"] for x in contexts
    }
    assert all(ex["context"] == i["seed_context"] for i in items for ex in i["seed_examples"])


def test_freeform_questions_come_from_this_leafs_seeds_only():
    flows = load_flows()
    haiku, odd = (r for r in RECORDS if r["kind"] in ("freeform_skill", "foundational_skill"))
    text = render(flows["freeform_skill"].steps[0], start_items(flows["freeform_skill"], haiku)[0])[0][
        "content"
    ]
    assert all(ex["question"] in text for ex in haiku["seed_examples"])
    assert not any(ex["question"] in text for ex in odd["seed_examples"])


def test_request_ids_are_content_derived():
    flow = load_flows()["freeform_skill"]
    items = start_items(flow, RECORDS[0])
    a = [r.request_id for _, r in plan(flow, flow.steps[0], items)]
    assert a == [r.request_id for _, r in plan(flow, flow.steps[0], items)]
    assert len(set(a)) == len(a)  # fan-out requests differ
    changed = [{**items[0], "task_description": "something else"}]
    assert not set(a) & {r.request_id for _, r in plan(flow, flow.steps[0], changed)}


def test_apply_drops_failures_schema_violations_and_low_scores_with_reasons():
    flow = load_flows()["freeform_skill"]
    gate = flow.steps[1]  # question_quality, threshold 1
    items = [{"leaf_id": "l", "kind": "freeform_skill", "question": f"q{i}?", "id": str(i)} for i in range(4)]
    planned = plan(flow, gate, items)
    rid = [r.request_id for _, r in planned]
    results = {
        rid[0]: ChatResult(rid[0], data={"rationale": "fine", "score": 1}),
        rid[1]: ChatResult(rid[1], data={"rationale": "vague", "score": 0}),
        rid[2]: ChatResult(rid[2], text='{"rationale": "x", "score": 7}'),
        rid[3]: ChatResult(rid[3], error="HTTP 503 after 6 attempts"),
    }
    out = apply(gate, planned, results)
    assert [i["question"] for i in out.items] == ["q0?"]
    assert out.items[0]["scores"]["question_quality"] == {"score": 1, "rationale": "fine"}
    reasons = " | ".join(out.dropped)
    assert "question_quality score 0 < 1" in reasons and "schema" in reasons and "HTTP 503" in reasons
    assert len(apply(gate, planned, results, gate=False).items) == 2  # no gating: low score kept, recorded


def _write_flow(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flow.yaml"
    path.write_text(text)
    return path


GOOD = (FLOWS_DIR / "freeform_skill.yaml").read_text()


@pytest.mark.parametrize(
    ("edit", "rule", "field", "line"),
    [
        (("    fan_out: 6\n", "    fan_out: 6\n    fanout: 2\n"), "unknown-key", "steps.0.fanout", 16),
        (("skills/answer.jinja", "skills/nope.jinja"), "prompt-missing", "steps.2.prompt", None),
        (
            ("score: {type: integer, enum: [0, 1]}", "score: {type: integre}"),
            "schema",
            "steps.1.schema",
            None,
        ),
        (
            (
                "    role: teacher\n    prompt: skills/freeform_questions.jinja\n",
                "    role: teacher\n    threshold: 2\n    prompt: skills/freeform_questions.jinja\n",
            ),
            "threshold",
            "steps.0.threshold",
            None,
        ),
        (("source: leaf", "source: chunks"), "enum", "source", 9),
        (
            (
                "    role: teacher\n    prompt: skills/answer.jinja\n",
                "    role: teacher\n    stage: critique\n    prompt: skills/answer.jinja\n",
            ),
            "critique-step",
            "steps.2.stage",
            None,
        ),
    ],
)
def test_bad_flow_files_name_file_line_and_field(tmp_path, edit, rule, field, line):
    old, new = edit
    assert old in GOOD
    path = _write_flow(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(UserError) as err:
        load_flow(path)
    problem = next(p for p in err.value.problems if p.rule == rule)
    assert problem.field == field and problem.where.startswith(f"{path}:")
    if line:
        assert problem.where.split(":")[1] == str(line)


def test_broken_yaml_and_template_syntax_are_located(tmp_path):
    with pytest.raises(UserError) as err:
        load_flow(_write_flow(tmp_path, "name: x\nsteps: [\n"))
    assert err.value.problems[0].rule == "yaml-syntax" and str(tmp_path) in err.value.problems[0].where


def test_instance_helper_is_schema_valid():
    import jsonschema

    for flow in load_flows().values():
        for step in flow.steps:
            jsonschema.validate(instance(step.schema, "k"), step.schema)


def test_fan_out_scale_scales_only_steps_that_create_items():
    import json

    from labpipe.generation.flow import load_flows, plan, start_items
    from tests.unit.critique.fixtures import SEEDS

    flow = load_flows()["freeform_skill"]
    record = next(json.loads(line) for line in SEEDS.read_text().splitlines() if '"freeform_skill"' in line)
    items = start_items(flow, record)
    questions, judge, answers = flow.generate_steps
    assert len(plan(flow, questions, items, fan_out_scale=2)) == 2 * questions.fan_out * len(items)
    questions_items = [{**items[0], "question": f"q{i}?"} for i in range(3)]
    assert len(plan(flow, judge, questions_items, fan_out_scale=2)) == 3  # each question judged once
    assert len(plan(flow, answers, questions_items, fan_out_scale=2)) == 6
