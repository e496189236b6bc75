"""MT-Bench questions: loading, validation and the reference's per-category sampling temperatures."""

from __future__ import annotations

from dataclasses import dataclass, field

from labpipe.errors import Problem, UserError
from labpipe.evaluation import sources
from labpipe.evaluation.jsonl import iter_jsonl, require

# fastchat/llm_judge/common.py: temperature_config
CATEGORY_TEMPERATURE = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
}
# fastchat/llm_judge/common.py: NEED_REF_CATS (judged against a reference answer)
REFERENCE_CATEGORIES = frozenset({"math", "reasoning", "coding"})


@dataclass(frozen=True)
class Question:
    question_id: int | str
    category: str
    turns: tuple[str, ...]
    reference: tuple[str, ...] = field(
        default=(), compare=False
    )  # reference answer turns, when judged with one

    @property
    def temperature(self) -> float:
        return CATEGORY_TEMPERATURE.get(self.category, 0.0)

    @property
    def needs_reference(self) -> bool:
        return self.category in REFERENCE_CATEGORIES or bool(self.reference)


def parse_questions(text: str, where: str) -> list[Question]:
    questions: list[Question] = []
    seen: dict[int | str, int] = {}
    for lineno, obj in iter_jsonl(text, where):
        loc = f"{where}:{lineno}:1"
        qid = require(obj, "question_id", (int, str), loc)
        category = require(obj, "category", str, loc)
        turns = require(obj, "turns", list, loc, fix="a list of 1 or 2 user turns")
        if not 1 <= len(turns) <= 2 or not all(isinstance(t, str) and t.strip() for t in turns):
            raise UserError(
                Problem(
                    where=loc,
                    rule="schema",
                    field="turns",
                    message="expected 1 or 2 non-empty strings",
                    fix="MT-Bench questions have 2 turns",
                )
            )
        if qid in seen:
            raise UserError(
                Problem(
                    where=loc,
                    rule="unique",
                    field="question_id",
                    message=f"question_id {qid} repeats line {seen[qid]}",
                )
            )
        seen[qid] = lineno
        questions.append(Question(qid, category, tuple(turns)))
    if not questions:
        raise UserError(Problem(where=where, rule="empty", message="no questions in the file"))
    return questions


def load_questions(
    source: str = "", *, verify: bool = True, max_questions: int = 0
) -> tuple[list[Question], str]:
    """The questions from `source` (file, data dir, s3://, URL; "" = FastChat's pinned file) and its sha256.

    `max_questions` > 0 keeps a stratified subset (round-robin over categories, in file order), so a
    smoke run still covers every category it can.
    """
    location = sources.resolve(source, sources.QUESTIONS)
    data, digest = sources.fetch(location, sources.QUESTIONS, verify=verify)
    questions = parse_questions(data.decode("utf-8"), location)
    return subset(questions, max_questions), digest


def subset(questions: list[Question], max_questions: int) -> list[Question]:
    if max_questions <= 0 or max_questions >= len(questions):
        return questions
    by_category: dict[str, list[Question]] = {}
    for q in questions:
        by_category.setdefault(q.category, []).append(q)
    picked: list[Question] = []
    for i in range(max(len(v) for v in by_category.values())):
        for items in by_category.values():
            if i < len(items) and len(picked) < max_questions:
                picked.append(items[i])
    order = {q.question_id: n for n, q in enumerate(questions)}
    return sorted(picked, key=lambda q: order[q.question_id])
