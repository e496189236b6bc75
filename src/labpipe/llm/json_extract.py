"""Tolerant JSON extraction from model replies, and the schema check every structured reply must pass.

Servers that enforce `response_format` return bare JSON; others (and the prompting fallback) wrap it in
code fences, leading prose or trailing chatter. `extract_json` finds the JSON value anyway;
`check_schema` says, in one line, why a value does not satisfy the request's schema.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

# The prompting fallback appends this to the last user turn; the fake server reads the schema back from it.
SCHEMA_MARKER = "JSON schema for your reply:"

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)


class NotJSON(ValueError):
    """The reply holds no parseable JSON value."""


def extract_json(text: str) -> Any:
    """The JSON value in `text`: bare, in a ``` fence, or after leading prose / before trailing text."""
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    for block in _FENCE.findall(text):
        try:
            return json.loads(block.strip())
        except ValueError:
            continue
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[{\[]", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
            return value
        except ValueError:
            continue
    preview = stripped[:80].replace("\n", " ")
    raise NotJSON(f"no JSON value in the reply (starts with {preview!r})")


@lru_cache(maxsize=256)
def _validator(schema_json: str):
    from jsonschema.validators import validator_for

    schema = json.loads(schema_json)
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def check_schema(value: Any, schema: dict[str, Any]) -> str | None:
    """None when `value` satisfies `schema`, else a one-line reason naming the failing field."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    error = next(iter(sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"schema violation at {where}: {error.message[:200]}"


def parse_reply(text: str, schema: dict[str, Any]) -> tuple[Any, str | None]:
    """(value, None) when `text` holds JSON satisfying `schema`; (None, reason) otherwise."""
    try:
        value = extract_json(text)
    except NotJSON as exc:
        return None, str(exc)
    reason = check_schema(value, schema)
    return (None, reason) if reason else (value, None)


def schema_instruction(schema: dict[str, Any]) -> str:
    """What the prompting fallback asks for when a server cannot enforce the schema itself."""
    return (
        "Reply with one JSON value only, no other text. It must satisfy this JSON schema.\n"
        f"{SCHEMA_MARKER}\n```json\n{json.dumps(schema, sort_keys=True)}\n```"
    )


def schema_from_instruction(text: str) -> dict[str, Any] | None:
    """The schema embedded by `schema_instruction` in a prompt, if any."""
    _, marker, rest = text.partition(SCHEMA_MARKER)
    if not marker:
        return None
    blocks = _FENCE.findall(rest)
    try:
        return json.loads(blocks[0]) if blocks else None
    except ValueError:
        return None
