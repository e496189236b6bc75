"""Ratings parsed as the reference does (fastchat/llm_judge/common.py, run_judge_single).

The first `[[x]]` wins, else the first `[x]`; x may be a decimal ("[[8.5]]"). No rating -> -1, which
aggregation drops. A judge call that failed for good is recorded as the text "$ERROR$" with score -1.
"""

from __future__ import annotations

import ast
import re

ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
ERROR_TEXT = "$ERROR$"  # FastChat's API_ERROR_OUTPUT
NO_RATING = -1


def parse_rating(judgment: str) -> int | float:
    match = ONE_SCORE.search(judgment) or ONE_SCORE_BACKUP.search(judgment)
    if not match:
        return NO_RATING
    return ast.literal_eval(match.group(1))


def format_structured(rationale: str, rating: int) -> str:
    """A schema-constrained verdict in the reference's text form, so the judgment file reads like FastChat's."""
    return f"{rationale.strip()}\n\nRating: [[{int(rating)}]]"
