"""Structured progress events from inside a stage, for whoever runs the stage (the `labpipe run` view).

A stage calls `emit(stage, **figures)`; when LABPIPE_PROGRESS=1 (set by `labpipe run` for its kfp.local
tasks) one line `LABPIPE_PROGRESS {"stage": ..., ...}` goes to stdout, which the runner reads from the
task's output and shows as the stage's key figure. Elsewhere (a stage run alone, a cluster pod) nothing
is printed. Events of one stage are throttled to one every `MIN_INTERVAL_S` unless `final=True`.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from labpipe.errors import PROGRESS_ENV, progress_enabled

ENV = PROGRESS_ENV
enabled = progress_enabled  # the switch lives in labpipe.errors, which prints problems under it too
PREFIX = "LABPIPE_PROGRESS "
MIN_INTERVAL_S = 0.5

_last: dict[str, float] = {}


def emit(stage: str, *, final: bool = False, **figures: Any) -> None:
    """One progress line for `stage` (no-op unless LABPIPE_PROGRESS is set)."""
    if not enabled():
        return
    now = time.monotonic()
    if not final and now - _last.get(stage, -1e9) < MIN_INTERVAL_S:
        return
    _last[stage] = now
    line = PREFIX + json.dumps({"stage": stage, **figures}, default=str, separators=(",", ":"))
    print(line, file=sys.stdout, flush=True)


def parse(line: str) -> dict[str, Any] | None:
    """The event in one output line (indentation and prefixes before the marker allowed), else None."""
    at = line.find(PREFIX)
    if at < 0:
        return None
    try:
        event = json.loads(line[at + len(PREFIX):])
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "stage" in event else None
