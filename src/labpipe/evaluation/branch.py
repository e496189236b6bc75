"""Branch evaluation: the changed taxonomy leaves' seed examples as questions, judged for base and candidate.

Each seed example of a changed leaf (seed-extraction records: leaf_id, status, seed_examples) becomes a
one-turn question whose seed answer is the reference, judged with the reference-answer prompt
(single-math-v1), as InstructLab's branch evaluation does. The comparison lists, per question,
improvements (candidate above base), regressions (below) and new (questions of leaves added by this
change, where the base had nothing to learn from), with per-leaf scores for both models.
"""

from __future__ import annotations

import json
from dataclasses import replace

from labpipe import storage
from labpipe.errors import Problem, UserError
from labpipe.evaluation.fastchat_io import read_judgments
from labpipe.evaluation.jsonl import iter_jsonl, require
from labpipe.evaluation.questions import Question
from labpipe.evaluation.stage import EvalConfig, judge_label, run_mt_bench


def branch_questions(records_uri: str) -> tuple[list[Question], dict[str, str]]:
    """(questions, leaf_id -> status) from a seed-records JSONL file; deleted leaves are skipped."""
    questions, statuses = [], {}
    for lineno, rec in iter_jsonl(storage.read_text(records_uri), records_uri):
        loc = f"{records_uri}:{lineno}:1"
        leaf = require(rec, "leaf_id", str, loc)
        status = str(rec.get("status", "added"))
        if status in ("deleted", "unchanged"):  # scope=taxonomy records every leaf; branch eval: changed only
            continue
        statuses[leaf] = status
        for i, ex in enumerate(require(rec, "seed_examples", list, loc), start=1):
            question = require(ex, "question", str, f"{loc} seed_examples[{i - 1}]")
            answer = require(ex, "answer", str, f"{loc} seed_examples[{i - 1}]")
            if ex.get("context"):
                question = f"{ex['context']}\n\n{question}"
            questions.append(Question(f"{leaf}#{i}", leaf, (question,), (answer,)))
    if not questions:
        raise UserError(
            Problem(
                where=records_uri,
                rule="branch",
                message="no seed examples in changed leaves",
                fix="pass the seed-extraction output of a taxonomy change",
            )
        )
    return questions, statuses


def compare(
    judgments, questions: list[Question], statuses: dict[str, str], candidate: str, base: str
) -> dict:
    scores = {(j.model, j.question_id): j.score for j in judgments if j.score != -1}
    out = {"improvements": [], "regressions": [], "new": [], "unchanged": [], "excluded": []}
    for q in questions:
        c, b = scores.get((candidate, q.question_id)), scores.get((base, q.question_id))
        row = {"question_id": q.question_id, "leaf": q.category, "candidate": c, "base": b}
        if c is None or b is None:
            out["excluded"].append(row)
        elif statuses.get(q.category) == "added":
            out["new"].append(row)
        else:
            out["improvements" if c > b else "regressions" if c < b else "unchanged"].append(row)
    return out


def run_branch_eval(cfg: EvalConfig, records: str) -> dict:
    """Answer and judge the changed leaves' questions (candidate and base); write <out>/branch.json."""
    if not cfg.base_model:
        raise UserError("branch evaluation compares with a base model", fix="pass --base-model")
    questions, statuses = branch_questions(records)
    meta = run_mt_bench(replace(cfg, include_mt_bench=False, extra_questions=questions))
    judgments = read_judgments(storage.join(cfg.out, "model_judgment", f"{judge_label(cfg)}_single.jsonl"))
    result = compare(judgments, questions, statuses, cfg.model_name, cfg.base_name)
    summary = {k: len(v) for k, v in result.items()}
    storage.write_text(
        storage.join(cfg.out, "branch.json"), json.dumps({**summary, **result}, indent=2) + "\n"
    )
    return {**meta, **{f"branch.{k}": v for k, v in summary.items()}}
