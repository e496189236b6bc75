"""The report on real judgments: two published models compared as candidate vs base."""

from __future__ import annotations

import base64

from labpipe.evaluation.aggregate import aggregate
from labpipe.evaluation.fastchat_io import read_judgments
from labpipe.evaluation.questions import load_questions
from labpipe.evaluation.report import regressions, write_report


def test_report_has_scores_chart_and_regressions_with_rationale(shared_data, tmp_path):
    questions, digest = load_questions(str(shared_data / "mt_bench"))
    path = (
        shared_data / "mt_bench_judgments/third_party/nathanstitt__FastChat/model_judgment/gpt-4_single.jsonl"
    )
    judgments = read_judgments(str(path))
    cand, base = "llama-2-chat-7b-0.1-0.1", "llama-2-chat-7b"
    scores = aggregate(judgments, {q.question_id: q.category for q in questions})
    regs = regressions(judgments, questions, cand, base, limit=3)
    assert len(regs) == 3 and regs[0].delta <= regs[1].delta <= regs[2].delta < 0
    assert "Rating: [[" in regs[0].rationale  # the judge's own words
    summary = {
        "invalid": False,
        "judge": "gpt-4",
        "judge_mode": "reference",
        "questions": 80,
        "questions_sha256": digest,
        "excluded": 0,
        "excluded_reasons": {},
    }
    shown = {"candidate": scores[cand].to_dict(), "base": scores[base].to_dict()}
    files = write_report(tmp_path, summary, shown, regs)

    md = files["markdown"].read_text()
    assert "| candidate | 6.26 | 6.75 | 5.78 | 160 | 0 |" in md
    assert "| base | 6.41 | 6.87 | 5.94 | 160 | 0 |" in md
    assert "| writing | 9.20 | 8.95 |" in md
    assert f"Question {regs[0].question_id}, turn {regs[0].turn}" in md
    png = files["chart"].read_bytes()
    assert png.startswith(b"\x89PNG")
    html = files["html"].read_text()
    assert (
        base64.b64encode(png).decode()[:200] in html
        and "<table>" in html
        and "<h2>Largest regressions" in html
    )
