"""What the fake OpenAI-compatible teacher answers (tests.support.fake_openai serves it over HTTP).

Replies are derived from a hash of the request, so the same request always gets the same answer; with a
`response_format` JSON schema (or a schema embedded by the client's prompting fallback) the reply is a
deterministic instance of that schema (`default_responder`, `schema_instance`).

A `FaultPlan` injects faults deterministically: 429 with Retry-After, 500, 503, replies slower than the
client's timeout, dropped connections, truncated JSON, non-JSON text, schema-violating JSON and
malformed response bodies - at seeded rates keyed by request content and attempt (so the arrival order
under concurrency does not matter), for the first N requests, for the first N attempts of every request,
or from a per-request hook. `context_error_reply` words a context overflow as each real server does.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labpipe.llm.json_extract import check_schema, schema_from_instruction

FAULT_KINDS = (
    "rate_limit",  # 429 with Retry-After
    "server_error",  # 500
    "unavailable",  # 503
    "slow",  # reply only after FaultPlan.slow_s (beyond the client's timeout)
    "drop",  # close the connection without a response
    "truncated_json",  # 200, content is JSON cut in half, finish_reason "length"
    "non_json",  # 200, content is prose (the same whatever the seed: a server that ignores it)
    "schema_violation",  # 200, content is JSON that breaks the requested schema
    "bad_body",  # 200, the HTTP body itself is cut (not parseable JSON)
    "overloaded",  # 503 "server overloaded" (as vLLM / TGI under load)
    "bad_request",  # 400 with an unrelated reason (not response_format, not context)
)
CONTEXT_DIALECTS = ("openai", "vllm", "llamacpp", "tgi")

_WORDS = (
    "the model writes a short clear answer about data training taxonomy question knowledge skill "
    "example careful step reason because first then finally result simple useful accurate detail "
    "context document summary poem river light science history number value test quick"
).split()


@dataclass
class Reply:
    """A complete HTTP reply a responder or hook may return instead of message content."""

    status: int = 200
    body: dict[str, Any] | str = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FaultPlan:
    """Which requests fail, and how. All choices are deterministic given `seed`.

    rates: kind -> probability for each attempt, drawn from a hash of (seed, request body, attempt).
    first: kind -> the first N chat requests the server receives get this fault (kinds in the order
        given: {"drop": 2, "slow": 1} drops requests 0 and 1 and delays request 2).
    first_attempts: kind -> likewise for the attempts of every distinct request body.
    hook: (request_json, attempt) -> a fault kind, a Reply, or None; consulted first.
    """

    rates: dict[str, float] = field(default_factory=dict)
    first: dict[str, int] = field(default_factory=dict)
    first_attempts: dict[str, int] = field(default_factory=dict)
    hook: Callable[[dict[str, Any], int], str | Reply | None] | None = None
    seed: int = 0
    retry_after_s: float | None = 0.05  # Retry-After sent with 429 (None: no header)
    slow_s: float = 30.0

    def __post_init__(self) -> None:
        unknown = sorted({*self.rates, *self.first, *self.first_attempts} - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}")
        if sum(self.rates.values()) > 1:
            raise ValueError("fault rates add up to more than 1")

    def pick(self, request: dict[str, Any], arrival: int, body_key: str, attempt: int) -> str | Reply | None:
        if self.hook is not None:
            chosen = self.hook(request, attempt)
            if chosen is not None:
                return chosen
        for counts, index in ((self.first, arrival), (self.first_attempts, attempt)):
            start = 0
            for kind, n in counts.items():  # in the order given
                if start <= index < start + n:
                    return kind
                start += n
        if self.rates:
            u = uniform(f"{self.seed}:{body_key}:{attempt}")
            acc = 0.0
            for kind in FAULT_KINDS:
                acc += self.rates.get(kind, 0.0)
                if u < acc:
                    return kind
        return None


def uniform(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def count_tokens(text: str) -> int:
    """The fake's notion of tokens: whitespace-separated words."""
    return len(text.split())


def request_schema(request: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """(schema, via_response_format): from response_format, else from a prompting-fallback instruction."""
    fmt = request.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return (fmt.get("json_schema") or {}).get("schema"), True
    for message in reversed(request.get("messages") or []):
        content = message.get("content")
        if isinstance(content, str):
            schema = schema_from_instruction(content)
            if schema is not None:
                return schema, False
    return None, False


def default_responder(request: dict[str, Any]) -> str | dict[str, Any]:
    """Deterministic content from a hash of the messages; a schema instance when a schema was asked for.

    With the prompting fallback the instance is wrapped in prose and a code fence, as chat models do.
    """
    rng = random.Random(digest(request.get("messages")))
    schema, via_response_format = request_schema(request)
    if schema is not None:
        value = schema_instance(schema, rng)
        if via_response_format:
            return value
        return f"Sure, here is the JSON:\n```json\n{json.dumps(value, indent=2)}\n```\nHappy to help further."
    n = min(int(request.get("max_tokens") or 64), rng.randint(8, 24))
    return " ".join(rng.choice(_WORDS) for _ in range(n)).capitalize() + "."


def schema_instance(schema: dict[str, Any], rng: random.Random, root: dict[str, Any] | None = None) -> Any:
    """A deterministic value satisfying the common JSON-schema keywords (type, enum, const, properties,
    items, min/max lengths, items and values, anyOf/oneOf, local $ref, simple patterns)."""
    root = root if root is not None else schema
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return schema_instance(target, rng, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return schema_instance(schema[key][0], rng, root)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(part)
        return schema_instance(merged, rng, root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties", {})
        return {name: schema_instance(sub, rng, root) for name, sub in props.items()}
    if kind == "array":
        lo, hi = schema.get("minItems", 0), schema.get("maxItems", 3)
        n = max(lo, min(hi, 2))
        return [schema_instance(schema.get("items", {"type": "string"}), rng, root) for _ in range(n)]
    if kind == "string":
        return _string_instance(schema, rng)
    if kind in ("integer", "number"):
        lo, hi = _bounds(schema)
        value = rng.randint(lo, hi)
        return value if kind == "integer" else float(value)
    if kind == "boolean":
        return rng.random() < 0.5
    return None


def _bounds(schema: dict[str, Any]) -> tuple[int, int]:
    lo = math.ceil(schema["minimum"]) if "minimum" in schema else None
    if lo is None and "exclusiveMinimum" in schema:
        lo = math.floor(schema["exclusiveMinimum"]) + 1
    lo = 0 if lo is None else lo
    hi = math.floor(schema["maximum"]) if "maximum" in schema else None
    if hi is None and "exclusiveMaximum" in schema:
        hi = math.ceil(schema["exclusiveMaximum"]) - 1
    hi = lo + 100 if hi is None else hi
    return lo, max(lo, hi)


def _string_instance(schema: dict[str, Any], rng: random.Random) -> str:
    lo, hi = schema.get("minLength", 0), schema.get("maxLength", 80)
    text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12))).capitalize()
    while len(text) < lo:
        text += " " + rng.choice(_WORDS)
    cut = text[:hi]
    text = cut.rstrip() if len(cut.rstrip()) >= lo else cut
    pattern = schema.get("pattern")
    if pattern and not re.search(pattern, text):
        for candidate in ("abc", "a", "A", "1", "a1", "Yes", "example"):
            if re.search(pattern, candidate) and lo <= len(candidate) <= hi:
                return candidate
    return text


def schema_violation(schema: dict[str, Any] | None) -> Any:
    """A JSON value that does not satisfy `schema`."""
    for candidate in ({"__unexpected__": 1}, [], "not the requested object", None, 0):
        if schema is None or check_schema(candidate, schema) is not None:
            return candidate
    return {"__unexpected__": 1}


def lognormal_latency(median_s: float, p99_s: float) -> Callable[[dict[str, Any]], float]:
    """A deterministic long-tailed latency per request: log-normal with the given median and p99."""
    from statistics import NormalDist

    sigma = math.log(p99_s / median_s) / NormalDist().inv_cdf(0.99)
    unit = NormalDist()

    def latency(request: dict[str, Any]) -> float:
        u = min(max(uniform(digest(request)), 1e-9), 1 - 1e-9)
        return median_s * math.exp(sigma * unit.inv_cdf(u))

    return latency


def context_error_reply(dialect: str, ctx: int, prompt: int, max_tokens: int) -> Reply | None:
    if dialect == "llamacpp":
        if prompt < ctx:
            return None
        return Reply(
            400,
            {
                "error": {
                    "code": 400,
                    "message": f"request ({prompt} tokens) exceeds the available context size ({ctx} tokens), "
                    "try increasing it",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": prompt,
                    "n_ctx": ctx,
                }
            },
        )
    if dialect == "vllm":
        if max_tokens > ctx:
            return error_reply(
                400,
                f"max_tokens={max_tokens} cannot be greater than max_model_len={ctx}. Please request fewer "
                "output tokens.",
                "BadRequestError",
            )
        if prompt + max_tokens > ctx:
            return error_reply(
                400,
                f"This model's maximum context length is {ctx} tokens. However, you requested "
                f"{prompt + max_tokens} tokens ({prompt} in the messages, {max_tokens} in the completion). "
                "Please reduce the length of the messages or completion.",
                "BadRequestError",
            )
        return None
    if dialect == "tgi":
        if prompt + max_tokens > ctx:
            return Reply(
                422,
                {
                    "error": f"Input validation error: `inputs` tokens + `max_new_tokens` must be <= {ctx}. "
                    f"Given: {prompt} `inputs` tokens and {max_tokens} `max_new_tokens`",
                    "error_type": "validation",
                },
            )
        return None
    if prompt > ctx:
        return error_reply(
            400,
            f"This model's maximum context length is {ctx} tokens. However, your "
            f"messages resulted in {prompt} tokens. Please reduce the length of the messages.",
            "context_length_exceeded",
        )
    return None


def error_reply(status: int, message: str, code: str) -> Reply:
    return Reply(status, {"error": {"message": message, "type": code, "code": code}})
