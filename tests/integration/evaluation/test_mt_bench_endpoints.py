"""run_mt_bench against OpenAI-compatible endpoints: the reference judging path, end to end over real HTTP.

The candidate, the base and the judge are deterministic fake OpenAI-compatible servers
(tests.support.fake_openai). The point is what labpipe does with them - the reference judge prompts sent
at temperature 0, FastChat parsing of realistic judge text, retries, counted exclusions, validity, files,
gate - not the quality of any answer.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from labpipe.errors import UserError
from labpipe.evaluation.fastchat_io import read_answers, read_judgments
from labpipe.evaluation.gate import gate_from_metrics
from labpipe.evaluation.stage import EvalConfig, run_mt_bench
from labpipe.llm.options import ClientOptions
from tests.support.fake_openai import FakeOpenAIServer

NO_RATING_QUESTION = "Compose an engaging travel blog post"  # question 81: the judge never rates turn 1


def answerer(style: str):
    def respond(request):
        last = request["messages"][-1]["content"]
        return f"{style} answer to: {last[:60]}"

    return respond


def judge_text(request) -> str:
    """Realistic judge replies in the reference's forms: [[x]], [x], decimals, and no rating at all."""
    system, user = request["messages"][0]["content"], request["messages"][1]["content"]
    assert request["temperature"] in (0, 0.7) and request["max_tokens"] == 2048  # 0.7: a retry
    assert "impartial judge" in system + user
    answer = user.rsplit("### Assistant A:", 1)[-1] if "### Assistant A:" in user else user
    if NO_RATING_QUESTION in user and "### User:" not in user:
        return "The response is a travel blog post. I am unable to assign a rating to it."
    if "thorough" in answer:
        return "The assistant's answer is detailed, accurate and helpful.\n\nRating: [[8.5]]"
    return "The assistant's answer is too short to be helpful. Rating: [4]"


@pytest.fixture
def servers():
    with (
        FakeOpenAIServer(answerer("A thorough"), model="candidate-7b") as cand,
        FakeOpenAIServer(answerer("A short"), model="base-7b") as base,
        FakeOpenAIServer(judge_text, model="gpt-4") as judge,
    ):
        yield cand, base, judge


def config(servers, out, shared_data, **kw) -> EvalConfig:
    cand, base, judge = servers
    return EvalConfig(
        model=cand.base_url,
        model_endpoint_name="candidate-7b",
        base_model=base.base_url,
        base_endpoint_name="base-7b",
        judge=ClientOptions(endpoint=judge.base_url, model="gpt-4"),
        questions=str(shared_data / "mt_bench"),
        max_questions=8,
        out=str(out),
        **kw,
    )


def test_reference_judging_end_to_end(servers, shared_data, tmp_path):
    cand, base, judge = servers
    meta = run_mt_bench(config(servers, tmp_path / "eval", shared_data, max_failed_share=0.2))
    out = tmp_path / "eval"

    # Answers: 8 questions (one per category) x 2 turns per model, turn 2 sent with the conversation so far.
    answers = read_answers(str(out / "model_answer" / "candidate.jsonl"))
    assert len(answers) == 8 and all(len(a.turns) == 2 for a in answers)
    assert answers[0].turns[0].startswith("A thorough answer")
    temps = {
        r["messages"][0]["content"][:30]: r["temperature"] for r in cand.requests if len(r["messages"]) == 1
    }
    assert temps["Compose an engaging travel blo"] == 0.7  # writing
    assert sorted({r["temperature"] for r in cand.requests}) == [0.0, 0.1, 0.7]
    assert {len(r["messages"]) for r in cand.requests} == {1, 3}

    # Judgments: FastChat rows, reference prompt names, parsed as the reference parses.
    judgments = read_judgments(str(out / "model_judgment" / "gpt-4_single.jsonl"))
    assert len(judgments) == 32
    assert {j.judge[1] for j in judgments} == {
        "single-v1",
        "single-math-v1",
        "single-v1-multi-turn",
        "single-math-v1-multi-turn",
    }
    unrated = [j for j in judgments if j.score == -1]
    assert [(j.question_id, j.turn) for j in unrated] == [(81, 1), (81, 1)]  # candidate and base
    assert all(j.attempts == 3 for j in unrated)  # retried, then excluded
    assert {j.score for j in judgments if j.model == "candidate"} == {8.5, -1}
    assert {j.score for j in judgments if j.model == "base"} == {4, -1}
    assert judge.total_requests == 32 + 2 * 2  # two unrated judgments retried twice each

    assert meta["candidate.overall"] == 8.5 and meta["base.overall"] == 4.0
    assert meta["excluded"] == 2 and meta["excluded.no_rating"] == 2 and meta["invalid"] is False
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["scores"]["candidate"]["categories"]["writing"] == 8.5
    assert metrics["scores"]["candidate"]["excluded"] == 1
    report = (out / "report.md").read_text()
    assert "| candidate | 8.50 |" in report and "Excluded judgments: 2" in report
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 1
    assert gate_from_metrics(metrics)["publish"] is True


def test_too_many_failed_judgments_make_an_invalid_evaluation_that_fails_the_stage(servers, shared_data, tmp_path):
    with pytest.raises(UserError) as err:
        run_mt_bench(config(servers, tmp_path / "eval", shared_data, max_failed_share=0.05, judge_attempts=1))
    (problem,) = err.value.problems
    assert problem.rule == "evaluation-invalid" and not err.value.transient  # a KFP retry ends at once
    assert "candidate: 1 of 16 judgments without a rating" in problem.message and "allowed: 5%" in problem.message
    assert "2 no_rating" in problem.message and "unable to assign a rating" in problem.message  # kind, example
    # what the judge did is kept for diagnosis; nothing in it can pass for a score
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["invalid"] is True
    assert metrics["scores"] == {} and metrics["unscored"]["candidate"]["excluded"] == 1
    decision = gate_from_metrics(metrics)
    assert decision["publish"] is False and "invalid" in decision["reasons"][0]
    assert "INVALID" in (tmp_path / "eval" / "report.md").read_text()


def test_answers_longer_than_the_judge_context_are_counted_exclusions(shared_data, tmp_path):
    long_answer = " ".join(["word"] * 2000)
    with (
        FakeOpenAIServer(lambda r: long_answer, model="candidate-7b") as cand,
        FakeOpenAIServer(lambda r: "ok", model="base-7b") as base,
        FakeOpenAIServer(lambda r: "Fine. Rating: [[6]]", model="gpt-4", max_context_tokens=1500) as judge,
    ):
        meta = run_mt_bench(config((cand, base, judge), tmp_path / "eval", shared_data, max_failed_share=1.0))
    assert meta["excluded.judge_error"] == 16 and meta["excluded"] == 16  # every candidate judgment
    assert meta["base.overall"] == 6.0 and "candidate.overall" not in meta
    rows = read_judgments(str(tmp_path / "eval" / "model_judgment" / "gpt-4_single.jsonl"))
    assert {j.judgment for j in rows if j.model == "candidate"} == {"$ERROR$"}
    raw = [json.loads(line) for line in (tmp_path / "eval" / "model_judgment" / "gpt-4_single.jsonl").open()]
    errors = {r["labpipe_error"] for r in raw if r["model"] == "candidate"}
    assert all(e.startswith("context_length: ") and "maximum context length is 1500" in e for e in errors)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["judge_errors"]["context_length"]["count"] == 16


def test_judge_calls_failing_beyond_the_allowed_share_fail_the_stage_with_the_reason(shared_data, tmp_path):
    long_answer = " ".join(["word"] * 2000)
    with (
        FakeOpenAIServer(lambda r: long_answer, model="candidate-7b") as cand,
        FakeOpenAIServer(lambda r: "ok", model="base-7b") as base,
        FakeOpenAIServer(lambda r: "Fine. Rating: [[6]]", model="gpt-4", max_context_tokens=1500) as judge,
    ):
        with pytest.raises(UserError) as err:
            run_mt_bench(config((cand, base, judge), tmp_path / "eval", shared_data))
    text = str(err.value)
    assert "16 of 32 judge calls failed after all retries (allowed: 10%)" in text
    assert "16 context_length" in text and "maximum context length is 1500 tokens" in text
    assert not (tmp_path / "eval").exists()


def test_unrated_judgments_are_retried_with_other_seeds_not_greedily_again(servers, shared_data, tmp_path):
    _, _, judge = servers
    run_mt_bench(config(servers, tmp_path / "eval", shared_data, max_failed_share=0.2))
    retried = [r for r in judge.requests if NO_RATING_QUESTION in r["messages"][1]["content"]]
    first_turn = [r for r in retried if "### User:" not in r["messages"][1]["content"]]
    assert sorted((r["seed"], r["temperature"]) for r in first_turn) == [
        (0, 0.0),
        (0, 0.0),
        (1, 0.7),
        (1, 0.7),
        (2, 0.7),
        (2, 0.7),
    ]


def test_unreachable_judge_is_a_clear_error(servers, shared_data, tmp_path):
    cand, base, _ = servers
    cfg = config(servers, tmp_path / "eval", shared_data)
    cfg.judge, cfg.max_retries = replace(cfg.judge, endpoint="http://127.0.0.1:9/v1", max_retries=0), 0
    with pytest.raises(UserError) as err:
        run_mt_bench(cfg)
    assert "127.0.0.1:9" in str(err.value)
    assert not (tmp_path / "eval").exists()  # no partial output


def test_labpipe_evaluate_mt_bench_exits_non_zero_on_an_invalid_evaluation(servers, shared_data, tmp_path, capsys):
    from labpipe.cli import main

    cand, base, judge = servers
    rc = main(["evaluate", "mt-bench", "--model", cand.base_url, "--model-endpoint-name", "candidate-7b",
               "--base-model", base.base_url, "--base-endpoint-name", "base-7b", "--judge", judge.base_url,
               "--judge-model", "gpt-4", "--questions", str(shared_data / "mt_bench"), "--max-questions", "8",
               "--judge-attempts", "1", "--max-failed-share", "0.05", "--out", str(tmp_path / "eval")])  # fmt: skip
    assert rc != 0
    err = capsys.readouterr().err
    assert "evaluation-invalid" in err and "no_rating" in err
