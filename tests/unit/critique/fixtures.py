"""Shared helpers of the generation and critique tests: the seed fixture and an in-process ChatClient.

`ScriptedClient` is a deterministic stand-in for a model, used where the point is the flow,
checkpoint and filter logic (what is asked, what is kept, what is resent), not data quality. It
answers every request with a schema-valid instance derived from a hash of the request (or with what
`reply(request)` returns), records every request it receives, and honours the ChatClient contract:
results are reported through `on_result`, failures come back with `.error` and never raise.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from labpipe.llm.types import ChatRequest, ChatResult

SEEDS = Path(__file__).parent / "data" / "seeds.jsonl"


def instance(schema: dict[str, Any], key: str) -> Any:
    """A deterministic schema instance: arrays at maxItems, the highest enum value, hashed strings."""
    if "enum" in schema:
        return max(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        return {name: instance(sub, f"{key}.{name}") for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        n = schema.get("maxItems", 2)
        return [instance(schema.get("items", {"type": "string"}), f"{key}[{i}]") for i in range(n)]
    if kind == "integer":
        return schema.get("maximum", 1)
    if kind == "number":
        return float(schema.get("maximum", 1.0))
    if kind == "boolean":
        return True
    word = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"Synthetic text {word} about the subject, written for the test number {word[:4]}?"


class ScriptedClient:
    model_name = "scripted"

    def __init__(self, reply: Callable[[ChatRequest], Any] | None = None):
        self.reply = reply
        self.requests: list[ChatRequest] = []

    def complete(self, requests: Sequence[ChatRequest], on_result=None) -> list[ChatResult]:
        out = []
        for req in requests:
            self.requests.append(req)
            value = self.reply(req) if self.reply else None
            if value is None:
                value = instance(req.schema or {"type": "string"}, req.request_id)
            if isinstance(value, ChatResult):
                result = value
            elif isinstance(value, Exception):
                result = ChatResult(req.request_id, error=str(value), attempts=3)
            else:
                text = value if isinstance(value, str) else json.dumps(value)
                data = value if not isinstance(value, str) else None
                result = ChatResult(
                    req.request_id, text=text, data=data, prompt_tokens=10, completion_tokens=5
                )
            out.append(result)
            if on_result:
                on_result(result)
        return out

    def close(self) -> None: ...


def prompt_of(req: ChatRequest) -> str:
    return req.messages[-1]["content"]
