"""Errors meant for people: where the problem is, which rule it breaks, and what to do about it.

The CLI prints a UserError as one line per problem and exits 1, never with a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass

PROBLEMS_PREFIX = "LABPIPE_PROBLEMS "
PROGRESS_ENV = "LABPIPE_PROGRESS"  # set by `labpipe run`: tasks print progress and problems as lines it reads


def progress_enabled() -> bool:
    """Whether this process runs under `labpipe run`'s view (labpipe.runs.progress emits only then)."""
    return os.environ.get(PROGRESS_ENV, "") not in ("", "0", "false")


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
    """A mistake in the user's input or environment; carries one or more located problems.

    `transient`: a retry of the same task may succeed (an endpoint down, a storm of 5xx or timeouts);
    False (the default): the same input fails the same way again, so a retried task ends at once with
    the same problems instead of resending (labpipe.retry_guard)."""

    def __init__(self, problems: list[Problem] | Problem | str, *, fix: str = "", transient: bool = False):
        if isinstance(problems, str):
            problems = [Problem(where="labpipe", rule="", message=problems, fix=fix)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        self.transient = transient
        super().__init__("\n".join(str(p) for p in self.problems))


def clean_user_errors() -> None:
    """Inside a pipeline component: an uncaught UserError prints its problems and exits 1, no traceback.

    Components call this as the first line of their body (KFP embeds only the function body, so it
    cannot be a decorator). It installs a `sys.excepthook`, so the KFP executor's own code path is
    untouched: any other exception (a genuine bug) keeps its traceback. Under `labpipe run`
    (LABPIPE_PROGRESS=1) the problems are also printed as one `LABPIPE_PROBLEMS [...]` JSON line that
    the runner repeats at the end of the run.
    """
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        if not isinstance(exc, UserError):
            return previous(exc_type, exc, tb)
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        if progress_enabled():
            print(PROBLEMS_PREFIX + json.dumps([asdict(p) for p in exc.problems]), file=sys.stderr)
        sys.stderr.flush()

    sys.excepthook = hook


def parse_problems(line: str) -> list[Problem] | None:
    """The problems in a `LABPIPE_PROBLEMS [...]` output line, else None."""
    at = line.find(PROBLEMS_PREFIX)
    if at < 0:
        return None
    try:
        return [Problem(**p) for p in json.loads(line[at + len(PROBLEMS_PREFIX):])]
    except (json.JSONDecodeError, TypeError):
        return None
