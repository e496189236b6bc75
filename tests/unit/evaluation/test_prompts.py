"""Judge prompt construction reproduces, byte for byte, the prompts FastChat sent in real judgment files."""

from __future__ import annotations

import pytest

from labpipe.errors import UserError
from labpipe.evaluation.fastchat_io import attach_references, read_answers, read_judgments
from labpipe.evaluation.prompts import judge_messages, load_judge_prompts, select_prompt, structured_judge
from labpipe.evaluation.questions import Question, load_questions


@pytest.fixture(scope="module")
def mt_bench(mt_bench_dir):
    questions, _ = load_questions(str(mt_bench_dir))
    questions = attach_references(questions, data_dir=str(mt_bench_dir))
    return questions, load_judge_prompts(data_dir=str(mt_bench_dir))


def test_prompt_choice_follows_the_reference(mt_bench):
    questions, _ = mt_bench
    by_cat = {q.category: q for q in questions}
    assert select_prompt(by_cat["writing"], 1) == "single-v1"
    assert select_prompt(by_cat["writing"], 2) == "single-v1-multi-turn"
    for cat in ("math", "reasoning", "coding"):
        assert select_prompt(by_cat[cat], 1) == "single-math-v1"
        assert select_prompt(by_cat[cat], 2) == "single-math-v1-multi-turn"


def test_rebuilt_prompts_equal_the_published_judgment_prompts(mt_bench, judgments_dir):
    questions, prompts = mt_bench
    by_qid = {q.question_id: q for q in questions}
    folder = judgments_dir / "third_party" / "nathanstitt__FastChat"
    answers = {a.question_id: a for a in read_answers(str(folder / "model_answer" / "llama-2-chat-7b.jsonl"))}
    judgments = [
        j
        for j in read_judgments(str(folder / "model_judgment" / "gpt-4_single.jsonl"))
        if j.model == "llama-2-chat-7b"
    ]
    assert len(judgments) == 160
    seen = set()
    for j in judgments:
        name, messages = judge_messages(prompts, by_qid[j.question_id], answers[j.question_id].turns, j.turn)
        assert name == j.judge[1]
        assert messages[0] == {"role": "system", "content": prompts[name].system_prompt}
        assert messages[1]["content"] == j.user_prompt, (j.question_id, j.turn)
        seen.add(name)
    assert seen == {"single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn"}


def test_reference_category_without_reference_is_an_error(mt_bench):
    _, prompts = mt_bench
    q = Question(999, "math", ("What is 2+2?", "And 3+3?"))
    with pytest.raises(UserError, match="reference answer"):
        judge_messages(prompts, q, ["4", "6"], 1)


def test_judge_prompts_file_is_verified_and_validated(mt_bench_dir, tmp_path):
    bad = tmp_path / "judge_prompts.jsonl"
    lines = (mt_bench_dir / "judge_prompts.jsonl").read_text().splitlines()
    bad.write_text("\n".join(line for line in lines if '"single-v1"' not in line) + "\n")
    with pytest.raises(UserError, match="checksum"):
        load_judge_prompts(str(bad))
    with pytest.raises(UserError, match="missing prompts: single-v1"):
        load_judge_prompts(str(bad), verify=False)


def test_structured_judge_spec_is_valid():
    spec = structured_judge()
    assert spec.schema["properties"]["rating"]["enum"] == list(range(1, 11))
    assert spec.schema["required"] == ["rationale", "rating"]
    assert "JSON" in spec.instruction and spec.max_tokens > 0
