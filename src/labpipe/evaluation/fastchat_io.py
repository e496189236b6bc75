"""FastChat's llm_judge file formats, read and written: model_answer/<model>.jsonl and
model_judgment/<judge>_single.jsonl, so results compare with published ones and FastChat's tools read ours.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from labpipe import storage
from labpipe.errors import Problem, UserError
from labpipe.evaluation import sources
from labpipe.evaluation.jsonl import dumps, iter_jsonl, require
from labpipe.evaluation.questions import Question


@dataclass
class Answer:
    question_id: int | str
    model_id: str
    turns: list[str]
    answer_id: str = field(default_factory=lambda: uuid.uuid4().hex[:22])
    tstamp: float = field(default_factory=time.time)
    errors: list[str] = field(default_factory=list)  # per-turn generation errors (not a FastChat field)

    def to_json(self) -> dict:
        row = {
            "question_id": self.question_id,
            "answer_id": self.answer_id,
            "model_id": self.model_id,
            "choices": [{"index": 0, "turns": self.turns}],
            "tstamp": self.tstamp,
        }
        if self.errors:
            row["labpipe_errors"] = self.errors
        return row


@dataclass
class Judgment:
    question_id: int | str
    model: str
    judge: tuple[str, str]  # (judge model name, prompt name)
    user_prompt: str
    judgment: str
    score: int | float
    turn: int
    tstamp: float = field(default_factory=time.time)
    attempts: int = 1  # not a FastChat field; written as labpipe_attempts when > 1
    error: str = ""  # not a FastChat field: why the judge call failed ($ERROR$), as the server said it

    def to_json(self) -> dict:
        row = {
            "question_id": self.question_id,
            "model": self.model,
            "judge": list(self.judge),
            "user_prompt": self.user_prompt,
            "judgment": self.judgment,
            "score": self.score,
            "turn": self.turn,
            "tstamp": self.tstamp,
        }
        if self.attempts > 1:
            row["labpipe_attempts"] = self.attempts
        if self.error:
            row["labpipe_error"] = self.error
        return row


def parse_answers(text: str, where: str) -> list[Answer]:
    answers = []
    for lineno, obj in iter_jsonl(text, where):
        loc = f"{where}:{lineno}:1"
        choices = require(obj, "choices", list, loc)
        turns = require(choices[0], "turns", list, loc) if choices and isinstance(choices[0], dict) else None
        if not turns:
            raise UserError(
                Problem(where=loc, rule="schema", field="choices[0].turns", message="missing answer turns")
            )
        answers.append(
            Answer(
                question_id=require(obj, "question_id", (int, str), loc),
                model_id=str(obj.get("model_id", "")),
                turns=[str(t) for t in turns],
                answer_id=str(obj.get("answer_id", "")),
                tstamp=float(obj.get("tstamp", 0.0)),
                errors=list(obj.get("labpipe_errors", [])),
            )
        )
    return answers


def read_answers(uri: str) -> list[Answer]:
    return parse_answers(storage.read_text(uri), uri)


def parse_judgments(text: str, where: str) -> list[Judgment]:
    judgments = []
    for lineno, obj in iter_jsonl(text, where):
        loc = f"{where}:{lineno}:1"
        judge = require(obj, "judge", list, loc)
        turn = require(obj, "turn", int, loc)
        judgments.append(
            Judgment(
                question_id=require(obj, "question_id", (int, str), loc),
                model=require(obj, "model", str, loc),
                judge=(str(judge[0]), str(judge[1])) if len(judge) == 2 else ("", ""),
                user_prompt=str(obj.get("user_prompt", "")),
                judgment=str(obj.get("judgment", "")),
                score=require(obj, "score", (int, float), loc),
                turn=turn,
                tstamp=float(obj.get("tstamp", 0.0)),
                attempts=int(obj.get("labpipe_attempts", 1)),
            )
        )
    return judgments


def read_judgments(uri: str) -> list[Judgment]:
    return parse_judgments(storage.read_text(uri), uri)


def write_jsonl(path: str | Path, rows: list) -> None:
    """Write rows (Answer, Judgment or dict) as JSON Lines; the file appears only when complete."""
    storage.write_text(
        str(path), "".join(dumps(r if isinstance(r, dict) else r.to_json()) + "\n" for r in rows)
    )


def attach_references(
    questions: list[Question], source: str = "", *, data_dir: str = "", verify: bool = True
) -> list[Question]:
    """Questions of the reference categories, with their reference answers (FastChat's gpt-4.jsonl)."""
    if not any(q.needs_reference for q in questions):
        return questions
    location = sources.resolve(source, sources.REFERENCE_ANSWERS, data_dir)
    data, _ = sources.fetch(location, sources.REFERENCE_ANSWERS, verify=verify)
    refs = {a.question_id: tuple(a.turns) for a in parse_answers(data.decode("utf-8"), location)}
    out = []
    for q in questions:
        if q.needs_reference:
            if q.question_id not in refs:
                raise UserError(
                    Problem(
                        where=location,
                        rule="reference",
                        field="question_id",
                        message=f"no reference answer for question {q.question_id} ({q.category})",
                    )
                )
            q = Question(q.question_id, q.category, q.turns, refs[q.question_id])
        out.append(q)
    return out
