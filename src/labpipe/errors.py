"""Errors meant for people: where the problem is, which rule it breaks, and what to do about it.

The CLI prints a UserError as one line per problem and exits 1, never with a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One located problem. `where` is `file:line:column` (or a URI / name when there is no file)."""

    where: str
    rule: str
    message: str
    fix: str = ""
    field: str = ""
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        rule = f"{self.rule}{f' [{self.field}]' if self.field else ''}: " if self.rule else ""
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"{self.where}: {self.severity}: {rule}{self.message}{fix}"


class UserError(Exception):
    """A mistake in the user's input or environment; carries one or more located problems."""

    def __init__(self, problems: list[Problem] | Problem | str, *, fix: str = ""):
        if isinstance(problems, str):
            problems = [Problem(where="labpipe", rule="", message=problems, fix=fix)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
