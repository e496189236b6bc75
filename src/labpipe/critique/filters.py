"""Free checks applied before any judge is paid: format and length, and thresholds on recorded scores."""

from __future__ import annotations

import re
from typing import Any

from labpipe.critique.profiles import Profile

_TEMPLATE_LEFTOVER = re.compile(r"\{\{|\}\}|\{%|%\}")


def format_problem(rec: dict[str, Any]) -> str | None:
    """Why a record cannot become a training example, or None."""
    for key in ("question", "answer"):
        value = rec.get(key)
        if not isinstance(value, str) or not value.strip():
            return f"missing or empty {key}"
        if _TEMPLATE_LEFTOVER.search(value):
            return f"template markup left in {key}"
    if rec["question"].strip() == rec["answer"].strip():
        return "answer repeats the question"
    if rec.get("kind") == "knowledge" and not (rec.get("chunk") or "").strip():
        return "knowledge record without its chunk"
    return None


def length_problem(rec: dict[str, Any], profile: Profile) -> str | None:
    q, a = len(rec["question"].strip()), len(rec["answer"].strip())
    if q < profile.min_question_chars:
        return f"question shorter than {profile.min_question_chars} chars"
    if q > profile.max_question_chars:
        return f"question longer than {profile.max_question_chars} chars"
    if a < profile.min_answer_chars:
        return f"answer shorter than {profile.min_answer_chars} chars"
    if a > profile.max_answer_chars:
        return f"answer longer than {profile.max_answer_chars} chars"
    return None


def score_problem(rec: dict[str, Any], step, threshold: float | None) -> str | None:
    score = (rec.get("scores") or {}).get(step.name, {}).get("score")
    if threshold is None or score is None:
        return None
    return f"{step.name} score {score} < {threshold}" if score < threshold else None
