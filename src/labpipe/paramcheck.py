"""Small checks the stages' `problems()` functions share: a number in range, a value one of a few.

Each returns a located Problem naming the config field (preflight maps fields to pipeline parameters).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labpipe.errors import Problem


def problem(name: str, message: str, fix: str, rule: str = "preflight") -> Problem:
    return Problem(where=f"parameter {name}", rule=rule, message=message, fix=fix, field=name)


def in_range(name: str, value: Any, low: float, high: float | None = None) -> list[Problem]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return [problem(name, f"{value!r} is not a number", f"pass a number for {name}")]
    if number < low or (high is not None and number > high):
        span = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        return [problem(name, f"{value!r} is out of range", f"pass {name} {span}")]
    return []


def one_of(name: str, value: Any, allowed: Sequence[str]) -> list[Problem]:
    if value in allowed:
        return []
    return [problem(name, f"{value!r} is not one of {', '.join(allowed)}", f"pass {name}={allowed[0]}")]
