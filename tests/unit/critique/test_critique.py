"""Critique: free filters, dedup, thresholds, judge reuse, mixing, the yield report and empty-set errors."""

from __future__ import annotations

import json

import pytest

from labpipe.critique.dedup import near_duplicates
from labpipe.critique.mixing import mix
from labpipe.critique.profiles import load_profile
from labpipe.critique.stage import (
    KNOWLEDGE_SET,
    REPORT_JSON,
    REPORT_MD,
    SKILLS_SET,
    CritiqueConfig,
    run_critique,
)
from labpipe.errors import UserError
from labpipe.generation.stage import GenerationConfig, run_generation
from labpipe.llm.options import ClientOptions
from tests.unit.critique.fixtures import SEEDS, ScriptedClient, prompt_of


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    run_generation(
        GenerationConfig(
            seeds=str(SEEDS), out=str(out), teacher=ClientOptions(endpoint="http://t/v1"), progress=False,
            fan_out_scale=0.3,
        ),
        client=ScriptedClient(),
    )
    return out


def _critique(generated, out, client=None, **kw):
    client = client or ScriptedClient()
    meta = run_critique(
        CritiqueConfig(generated=str(generated), out=str(out), judge=ClientOptions(endpoint="http://j/v1"), **kw),
        client=client,
    )
    return meta, client


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sets_have_messages_metadata_and_the_chunk_in_the_knowledge_user_turn(generated, tmp_path):
    meta, _ = _critique(generated, tmp_path)
    knowledge, skills = _rows(tmp_path / KNOWLEDGE_SET), _rows(tmp_path / SKILLS_SET)
    assert meta["knowledge_set"] == len(knowledge) > 0 and meta["skills_set"] == len(skills) > 0
    for ex in knowledge:
        user, assistant = ex["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        assert "chickadee" in user["content"]  # the chunk
        assert ex["metadata"]["phase"] == "knowledge" and ex["metadata"]["kind"] == "knowledge"
        assert set(ex["metadata"]["scores"]) == {"faithfulness", "relevancy", "question_quality"}
    phases = {ex["metadata"]["phase"] for ex in skills}
    assert phases == {"skills", "knowledge_replay"}
    grounded = [ex for ex in skills if ex["metadata"]["kind"] == "grounded_skill"]
    assert grounded and all("\n\n" in ex["messages"][0]["content"] for ex in grounded)  # context + question
    assert all({"leaf_id", "kind", "source_id", "scores", "phase"} <= set(ex["metadata"]) for ex in skills)


def test_scores_recorded_by_generation_are_not_bought_again(generated, tmp_path):
    _, client = _critique(generated, tmp_path)
    asked = {prompt_of(r).split("\n")[0] for r in client.requests}
    freeform_questions = [
        r for r in client.requests if "You review a question" in prompt_of(r) and "haiku" in prompt_of(r)
    ]
    assert not freeform_questions  # freeform question_quality was scored in generation
    assert any("grade an AI assistant" in a for a in asked)  # pair rating is critique's
    report = json.loads((tmp_path / REPORT_JSON).read_text())
    assert report["totals"]["judge_scores_reused"] >= 20


def test_deterministic_under_seed_and_samples_per_skill_leaf(generated, tmp_path):
    _critique(generated, tmp_path / "a", samples_per_skill_leaf=3, seed=7)
    _critique(generated, tmp_path / "b", samples_per_skill_leaf=3, seed=7)
    _critique(generated, tmp_path / "c", samples_per_skill_leaf=3, seed=8)
    a, b, c = ((tmp_path / d / SKILLS_SET).read_text() for d in "abc")
    assert a == b and a != c
    per_leaf = {}
    for ex in _rows(tmp_path / "a" / SKILLS_SET):
        if ex["metadata"]["phase"] == "skills":
            per_leaf[ex["metadata"]["leaf_id"]] = per_leaf.get(ex["metadata"]["leaf_id"], 0) + 1
    assert per_leaf and set(per_leaf.values()) == {3}


def test_rerun_resumes_judge_calls_from_checkpoints(generated, tmp_path):
    first, _ = _critique(generated, tmp_path)
    again, client = _critique(generated, tmp_path)
    assert first["judge_requests_sent"] > 0 and again["judge_requests_sent"] == 0 and not client.requests
    assert again["judge_requests_cached"] == first["judge_requests_sent"]


def test_low_scores_and_bad_replies_are_dropped_with_reasons(generated, tmp_path):
    def judge(req):
        text = prompt_of(req)
        if "addresses its question" in text and int(req.request_id, 16) % 2:  # relevancy: some off-topic
            return {"rationale": "off-topic", "score": 0}
        if "grade an AI assistant" in text and "inclusive" in text:
            return "I think it is fine"  # not JSON
        return None

    meta, _ = _critique(generated, tmp_path, client=ScriptedClient(judge))
    report = json.loads((tmp_path / REPORT_JSON).read_text())
    relevancy = report["filters"]["relevancy"]
    assert list(relevancy["reasons"]) == ["relevancy score 0 < 2"] and 0 < relevancy["dropped"] < 12
    assert meta["knowledge_set"] == 12 - relevancy["dropped"]
    assert report["filters"]["pair_rating"]["reasons"] == {"judge reply unusable: reply is not JSON": 6}
    leaf = report["leaves"]["compositional_skills/grounded/inclusive_language"]
    assert leaf["kept"] == 0 and "not JSON" in leaf["note"]


def test_knowledge_all_dropped_raises_naming_the_filters(generated, tmp_path):
    def judge(req):
        return {"rationale": "unsupported", "score": 0} if "supported by a source" in prompt_of(req) else None

    with pytest.raises(UserError) as err:
        _critique(generated, tmp_path, client=ScriptedClient(judge))
    message = str(err.value)
    assert "knowledge training set is empty" in message and "faithfulness removed 12/12" in message
    assert not (tmp_path / KNOWLEDGE_SET).exists()
    assert (tmp_path / REPORT_MD).exists()  # the report explains it
    report = json.loads((tmp_path / REPORT_JSON).read_text())
    note = report["leaves"]["knowledge/science/animals/chickadee"]["note"]
    assert note.startswith("yielded nothing") and "faithfulness" in note


def test_smoke_profile_records_scores_but_keeps_them(generated, tmp_path):
    def judge(req):
        return {"rationale": "bad", "score": 0 if 'score": 0' in prompt_of(req) else 1}

    meta, _ = _critique(generated, tmp_path, client=ScriptedClient(judge), profile="smoke")
    assert meta["kept"] == meta["generated"] and meta["knowledge_set"] > 0


def test_leaf_that_generated_nothing_is_reported_with_reasons(tmp_path):
    def teacher(req):  # the odd-one-out leaf's questions all break the schema
        return {"questions": []} if "does not belong" in prompt_of(req) else None

    run_generation(
        GenerationConfig(
            seeds=str(SEEDS),
            out=str(tmp_path / "g"),
            teacher=ClientOptions(endpoint="http://t/v1"),
            progress=False,
            fan_out_scale=0.3,
        ),
        client=ScriptedClient(teacher),
    )
    _critique(tmp_path / "g", tmp_path / "c")
    report = json.loads((tmp_path / "c" / REPORT_JSON).read_text())
    leaf = report["leaves"]["foundational_skills/reasoning/odd_one_out"]
    assert (
        leaf["generated"] == 0
        and "generation produced no records" in leaf["note"]
        and "schema" in leaf["note"]
    )
    assert "odd_one_out" in (tmp_path / "c" / REPORT_MD).read_text()


def test_format_length_and_near_duplicate_filters():
    base = {"leaf_id": "l", "kind": "freeform_skill", "flow": "freeform_skill"}
    answer = "Grey waves fold softly over the cold stones while gulls circle slowly above the empty harbour in the pale light"
    recs = [
        {
            **base,
            "id": "a",
            "question": "Write a haiku about the quiet winter sea at dawn.",
            "answer": answer,
        },
        {
            **base,
            "id": "b",
            "question": "Write a haiku about the quiet winter sea at dawn, please!",
            "answer": answer,
        },
        {
            **base,
            "id": "c",
            "question": "Name three primary colours used in painting.",
            "answer": "Red, yellow and blue.",
        },
    ]
    assert near_duplicates(recs, 0.7) == {"b": "a"}
    assert near_duplicates(recs, 1.0) == {}
    assert near_duplicates(
        [recs[0], {**recs[0], "id": "d", "question": recs[0]["question"].upper()}], 1.0
    ) == {"d": "a"}
    from labpipe.critique.filters import format_problem, length_problem

    assert (
        format_problem({**base, "question": "Hi {{ name }}", "answer": "x"})
        == "template markup left in question"
    )
    assert format_problem({**base, "question": "same", "answer": "same"}) == "answer repeats the question"
    assert length_problem({**base, "question": "short?", "answer": "ok"}, load_profile("lab")).startswith(
        "question shorter"
    )


def test_mix_replay_share_and_profile_errors(tmp_path):
    kept = [
        {"leaf_id": "k", "kind": "knowledge", "id": str(i), "chunk": "c", "question": "q", "answer": "a"}
        for i in range(10)
    ]
    kept += [
        {"leaf_id": "s", "kind": "freeform_skill", "id": f"s{i}", "question": "q", "answer": "a"}
        for i in range(5)
    ]
    knowledge, skills, sampled = mix(kept, samples_per_skill_leaf=30, replay_ratio=0.2, seed=0)
    assert len(knowledge) == 10 and sampled == {"s": 5}
    assert sum(ex["metadata"]["phase"] == "knowledge_replay" for ex in skills) == 2
    bad = tmp_path / "p.yaml"
    bad.write_text("thresholds: {pair_rating: 3}\nmin_answer_char: 5\n")
    with pytest.raises(UserError, match="unknown key 'min_answer_char'"):
        load_profile(str(bad))
    with pytest.raises(UserError, match="not found"):
        load_profile("strict")


def test_knowledge_leaf_that_generated_nothing_stops_before_training(tmp_path):
    """The changed leaves include knowledge, generation produced none of it (the teacher failed every
    knowledge request): critique must stop the pipeline, not hand training an empty knowledge set."""

    def teacher(req):
        return RuntimeError("context_length: prompt too long") if "chickadee" in prompt_of(req).lower() else None

    config = GenerationConfig(
        seeds=str(SEEDS), out=str(tmp_path / "g"), teacher=ClientOptions(endpoint="http://t/v1"), progress=False,
        fan_out_scale=0.3,
    )
    with pytest.raises(UserError, match="4 of 57 teacher requests failed"):  # generation stops first now
        run_generation(config, client=ScriptedClient(teacher))
    config.max_failed_share = 1.0  # and if it is told to accept failures, critique still stops
    run_generation(config, client=ScriptedClient(teacher))
    with pytest.raises(UserError) as err:
        _critique(tmp_path / "g", tmp_path / "c")
    assert "knowledge training set is empty" in str(err.value)
    assert not (tmp_path / "c" / KNOWLEDGE_SET).exists()


def test_a_failed_critique_in_a_temporary_folder_points_at_files_that_remain(generated, tmp_path):
    """A pipeline task runs critique in a temporary folder (out="") removed when it ends: its error must name
    the report output it wrote, not a file in the removed folder (issue 20, item 6)."""

    def judge(req):
        return {"rationale": "unsupported", "score": 0} if "supported by a source" in prompt_of(req) else None

    report_out = tmp_path / "report" / "yield.md"
    with pytest.raises(UserError) as err:
        run_critique(
            CritiqueConfig(generated=str(generated), out="", judge=ClientOptions(endpoint="http://j/v1"), report_md_out=str(report_out)),
            client=ScriptedClient(judge),
        )
    (problem,) = err.value.problems
    assert problem.rule == "empty-training-set" and problem.where == str(report_out)
    assert "yielded nothing" in report_out.read_text()  # the report that explains it is there
