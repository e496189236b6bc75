"""JSON Lines reading with located errors (file:line:column), shared by every MT-Bench file reader."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from labpipe.errors import Problem, UserError


def iter_jsonl(text: str, where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; a malformed line raises a located UserError."""
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(
                Problem(
                    where=f"{where}:{lineno}:{exc.colno}",
                    rule="json",
                    message=exc.msg,
                    fix="each line must be one JSON object",
                )
            ) from None
        if not isinstance(obj, dict):
            raise UserError(
                Problem(where=f"{where}:{lineno}:1", rule="json", message="line is not a JSON object")
            )
        yield lineno, obj


def require(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, fix: str = "") -> Any:
    """obj[key] if present and of type `kind`, else a UserError naming the field."""
    value = obj.get(key)
    if value is None or not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise UserError(
            Problem(
                where=where,
                rule="schema",
                field=key,
                message=f"missing or not a {names}: {value!r}"[:200],
                fix=fix,
            )
        )
    return value


def dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj)  # FastChat writes ASCII-escaped JSON; keep files byte-comparable
