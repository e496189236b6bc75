"""Server dialects: how an OpenAI-compatible server (vLLM, llama.cpp, transformers serve, TGI, KServe,
OpenAI) is asked, and how what it says is read. A new rule for a server goes here.

- `request_body`: the JSON of one attempt: structured output (response_format json_schema / json_object,
  or the schema in the prompt), and what a re-ask changes (the seed, a greedy request's temperature).
- `read_reply`: a 200: the text, the usage (every attempt is paid for, usable or not), and whether the
  reply is usable (JSON, the schema, cut at max_tokens).
- `read_failure`: any other status, classified by what the server said, not by status code alone:
  429 (rate_limit), 503/529 or "overloaded" (overloaded), other 5xx/408 (server_error); context-length
  errors in each server's wording, with the numbers it names; llama.cpp's 500 for a grammar-bound reply
  cut at max_tokens (truncated); a rejected `response_format`; a rejected key (api_key) and an unknown
  model (model), which the client raises as UserError.
- `EndpointState`: what was learnt about one endpoint (structured mode, context length, tokens per
  character, whether it ignores the seed) and the context rules built on it (`max_tokens`,
  `learn_context`).
- `served_context_length` / `served_identity`: what a GET /models entry says about the model.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from labpipe.llm.json_extract import NotJSON, check_schema, extract_json, schema_instruction
from labpipe.llm.types import ChatRequest, ChatResult

UNUSABLE = ("not_json", "schema", "truncated")  # replies worth re-asking with another seed
FATAL = ("api_key", "model")  # every request would fail the same way: the client raises UserError
# Once an endpoint has repeated an unusable reply for SEED_IGNORED_AFTER requests without ever varying a
# re-asked reply, it ignores the seed (see openai_client's REPEATS_PER_REQUEST).
SEED_IGNORED_AFTER = 3
REASK_TEMPERATURE = 0.7  # a greedy request re-asked at temperature 0 would get the same reply again

# Context-length errors, by server: OpenAI/vLLM ("This model's maximum context length is N tokens ..."),
# vLLM ("max_tokens=N cannot be greater than max_model_len=M", "... your request has N input tokens",
# 0.32: "... your prompt contains at least N input tokens"),
# llama.cpp ("request (N tokens) exceeds the available context size (M tokens)", exceed_context_size_error),
# TGI ("`inputs` tokens + `max_new_tokens` must be <= N. Given: P `inputs` tokens"), KServe
# ("Input length ... exceeds the maximum ..."), Anthropic-style "prompt is too long".
_CONTEXT_TOO_LONG = re.compile(
    r"context.length|maximum context|context window|context size|exceed_context_size|max_model_len|"
    r"prompt is too long|too many tokens|reduce the length|input length|inputs` tokens|must have less than",
    re.I,
)
_CTX_NUMBERS = (  # (regex, group of the context length, group of the prompt length or None)
    (re.compile(r"request \((\d+) tokens\) exceeds the available context size \((\d+) tokens\)"), 2, 1),
    (re.compile(r"maximum context length is (\d+) tokens.*?(\d+) in the messages", re.S), 1, 2),
    (re.compile(r"maximum context length is (\d+) tokens.*?has (\d+) input tokens", re.S), 1, 2),
    (
        re.compile(r"maximum context length is (\d+) tokens.*?contains at least (\d+) input tokens", re.S),
        1,
        2,
    ),
    (re.compile(r"maximum context length is (\d+) tokens.*?messages resulted in (\d+) tokens", re.S), 1, 2),
    (re.compile(r"must be <= (\d+)\. Given: (\d+) `inputs` tokens"), 1, 2),
    (re.compile(r"must have less than (\d+) tokens\. Given: (\d+)"), 1, 2),
    (re.compile(r"max_model_len=(\d+)"), 1, None),
    (re.compile(r"maximum context length is (\d+)"), 1, None),
)
# vLLM 0.32 refuses a prompt of more characters than 13 per token of context before tokenizing it ("your prompt
# contains N characters (more than M characters, which is the upper bound for C input tokens)"): no token count,
# but the prompt alone is too long, so a re-send with max_tokens capped cannot fit.
_PROMPT_ALONE_TOO_LONG = re.compile(r"upper bound for \d+ input tokens", re.I)
_RESPONSE_FORMAT = re.compile(
    r"response_format|json_schema|json schema|guided|structured output|grammar|json_object", re.I
)
_CUT_STRUCTURED = re.compile(r"peg-native format|expected .*format|failed to parse", re.I)  # llama.cpp 500
_UNKNOWN_MODEL = re.compile(
    r"pinned to|model.{0,80}(not found|does not exist|not exist|unknown|not served|not available)|"
    r"(unknown|invalid) model|model_not_found",
    re.I | re.S,
)
_OVERLOADED = re.compile(r"overload|server is busy|too many requests|no slot|capacity", re.I)


@dataclass
class Outcome:
    """What one attempt came to: a result, or a failure of some `kind` with a message."""

    kind: str  # "ok", a TRANSIENT or UNUSABLE kind, "response_format", "context_length", "http", or FATAL
    message: str = ""
    result: ChatResult | None = None
    retry_after: float | None = None
    text: str = ""  # the reply, for unusable ones (a server that repeats it is not asked again)
    prompt_tokens: int = 0  # what the attempt cost (usage), also when the reply was unusable
    completion_tokens: int = 0
    context: int | None = None  # context_length failures: the context and prompt size the server named
    prompt_size: int | None = None
    cut: bool = False  # the reply stopped at max_tokens


def chars(request: ChatRequest) -> int:
    return sum(len(str(m.get("content") or "")) for m in request.messages)


@dataclass
class EndpointState:
    """What was learnt about one endpoint: how it takes structured output, how long its context is."""

    base_url: str
    structured: str = "auto"  # json_schema | json_object | prompt once decided
    structured_reason: str = ""
    context_length: int | None = None
    tokens_per_char: float = 0.0  # highest prompt_tokens / prompt characters seen (prompts >= 200 chars)
    announced: bool = False
    known_to_enforce: bool = False  # GET /models says vLLM or llama.cpp: no need to wait for the probe
    repeated: int = 0  # requests whose re-ask got the same unusable reply again
    varied: int = 0  # requests whose re-ask got a different reply

    @property
    def ignores_seed(self) -> bool:
        return self.repeated >= SEED_IGNORED_AFTER and self.repeated > self.varied

    def describe(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "structured_output": self.structured,
            **({"structured_output_reason": self.structured_reason} if self.structured_reason else {}),
            "context_length": self.context_length,
        }

    def learn(self, chars: int, prompt_tokens: int) -> None:
        if chars >= 200 and prompt_tokens > 0:
            self.tokens_per_char = max(self.tokens_per_char, prompt_tokens / chars)

    def estimate_prompt_tokens(self, chars: int) -> int:
        ratio = self.tokens_per_char or 0.5  # before any usage: a typical BPE tokenizer's 2 chars/token
        return math.ceil(chars * ratio * 1.1) + 16

    def learn_context(self, outcome: Outcome) -> bool:
        """Learn the context length from a context error; True when a capped retry can fit."""
        if outcome.context:
            self.context_length = min(self.context_length or outcome.context, outcome.context)
        if not self.context_length:
            return False
        if outcome.prompt_size is None:  # capped by the estimate from now on, unless the prompt alone is over
            return outcome.context is not None and not _PROMPT_ALONE_TOO_LONG.search(outcome.message)
        return self.context_length - outcome.prompt_size >= 1

    def max_tokens(self, request: ChatRequest, prompt_size: int | None, boost: int) -> int:
        """The request's max_tokens (times `boost`), capped to the room the context leaves the prompt."""
        wanted = request.max_tokens * boost
        if not self.context_length:
            return wanted
        used = prompt_size if prompt_size is not None else self.estimate_prompt_tokens(chars(request))
        room = self.context_length - used
        return max(1, min(wanted, room))


def request_body(
    request: ChatRequest, model: str, mode: str, max_tokens: int, reask: int = 0
) -> dict[str, Any]:
    messages = [dict(m) for m in request.messages]
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "temperature": request.temperature,
        "max_tokens": max_tokens,
    }
    if request.seed is not None or reask:
        # A re-ask varies the sampling seed (and samples, if the request was greedy): the same seed
        # would get the same unusable reply from vLLM or llama.cpp. The request id is unchanged.
        body["seed"] = (request.seed or 0) + reask * 7919
    if reask and request.temperature < REASK_TEMPERATURE:
        body["temperature"] = REASK_TEMPERATURE
    if request.schema is None:
        return body
    if mode == "json_schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": request.schema},
        }
        return body
    if mode == "json_object":
        body["response_format"] = {"type": "json_object"}
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
    if last_user is None:
        messages.append({"role": "user", "content": schema_instruction(request.schema)})
    else:
        messages[last_user]["content"] += "\n\n" + schema_instruction(request.schema)
    return body


def read_choice(response: httpx.Response) -> tuple[dict[str, Any], str, dict[str, int]] | None:
    """(the first choice, its text, the usage as prompt_tokens/completion_tokens) of a 200; None when
    the body is not a chat completion."""
    try:
        payload = response.json()
        choice = payload["choices"][0]
        text = choice["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    usage = payload.get("usage") or {}
    spent = {
        "prompt_tokens": int(usage.get("prompt_tokens") or 0),
        "completion_tokens": int(usage.get("completion_tokens") or 0),
    }
    return choice, text, spent


def read_reply(response: httpx.Response, request: ChatRequest, max_tokens: int) -> Outcome:
    """A 200 reply: a result, or why it is unusable (with what the attempt cost either way)."""
    read = read_choice(response)
    if read is None:
        return Outcome("bad_response", f"unparseable response body ({len(response.content)} bytes)")
    choice, text, spent = read
    result = ChatResult(request.request_id, text=text, **spent)
    if request.schema is not None:
        cut = choice.get("finish_reason") == "length"
        try:
            result.data = extract_json(text)
        except NotJSON as exc:
            note = f" (cut at max_tokens={max_tokens})" if cut else ""
            return Outcome("truncated" if cut else "not_json", f"{exc}{note}", text=text, cut=cut, **spent)
        reason = check_schema(result.data, request.schema)
        if reason:
            return Outcome("schema", reason, text=text, **spent)
    return Outcome("ok", result=result, **spent)


def read_failure(
    response: httpx.Response, had_response_format: bool, redact: Callable[[str], str]
) -> Outcome:
    """Classify a non-200 reply by what the server said (see the module docstring)."""
    status = response.status_code
    said = redact(server_message(response))
    message = f"HTTP {status}: {said[:1000]}"
    if status in (401, 403):
        return Outcome("api_key", message)
    if (status == 404 and "model" in said.lower()) or (
        status in (400, 404, 422) and _UNKNOWN_MODEL.search(said)
    ):
        return Outcome("model", message)
    if status == 429:
        return Outcome("rate_limit", message, retry_after=retry_after(response))
    if _CONTEXT_TOO_LONG.search(said) and status < 500:
        context, prompt = context_numbers(said, response)
        return Outcome("context_length", message, context=context, prompt_size=prompt)
    if status >= 500 and had_response_format and _CUT_STRUCTURED.search(said):
        # Most often the reply was cut at max_tokens, but llama.cpp also refuses whole replies its parser does
        # not take: say what is known, and re-ask with more room (bounded, as for any cut reply).
        return Outcome("truncated", f"{message} (the server could not parse its own schema-bound reply; most often "
                       "one cut at max_tokens, counted as max_tokens generated)", cut=True)  # fmt: skip
    if status in (503, 529) or (status >= 500 and _OVERLOADED.search(said)):
        return Outcome("overloaded", message, retry_after=retry_after(response))
    if status >= 500 or status == 408:
        return Outcome("server_error", message, retry_after=retry_after(response))
    if had_response_format and status in (400, 422, 501) and _RESPONSE_FORMAT.search(said):
        return Outcome("response_format", message)
    return Outcome("http", message)


def served_context_length(entry: dict | None) -> int | None:
    """The context window a GET /models entry reports (vLLM, llama.cpp, others), if any."""
    if not isinstance(entry, dict):
        return None
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    for value in (
        entry.get("max_model_len"),
        meta.get("n_ctx"),
        entry.get("context_length"),
        entry.get("context_window"),
        entry.get("max_context_length"),
    ):
        if isinstance(value, int) and value > 0:
            return value
    return None


def known_to_enforce(entry: dict | None) -> bool:
    """GET /models says the server is vLLM (`owned_by`, `max_model_len`) or llama.cpp (`owned_by`,
    `meta.n_ctx`), both of which enforce response_format json_schema."""
    if not isinstance(entry, dict):
        return False
    meta = entry.get("meta")
    return (
        entry.get("owned_by") in ("vllm", "llamacpp")
        or "max_model_len" in entry
        or (isinstance(meta, dict) and "n_ctx" in meta)
    )


def served_identity(entry: dict[str, Any], revision: str) -> dict[str, Any]:
    """What a GET /models entry says that depends on the model's weights, not on the server process
    (vLLM's `root`, `parent` and `max_model_len`; llama.cpp's `meta` without the per-slot `n_ctx`; other
    servers' `root`), and the explicit `revision`."""
    found: dict[str, Any] = {k: entry[k] for k in ("root", "parent", "max_model_len") if entry.get(k)}
    meta = entry.get("meta")
    if isinstance(meta, dict):
        found["meta"] = {k: v for k, v in sorted(meta.items()) if k != "n_ctx"}
    if revision:
        found["revision"] = revision
    return found


def context_numbers(said: str, response: httpx.Response) -> tuple[int | None, int | None]:
    """(context length, prompt tokens) from a context-length error, where the server names them."""
    try:
        error = response.json().get("error")
        if isinstance(error, dict) and isinstance(error.get("n_ctx"), int):  # llama.cpp
            return error["n_ctx"], error.get("n_prompt_tokens")
    except (ValueError, AttributeError):
        pass
    for pattern, ctx_group, prompt_group in _CTX_NUMBERS:
        match = pattern.search(said)
        if match:
            return int(match.group(ctx_group)), int(match.group(prompt_group)) if prompt_group else None
    return None, None


def server_message(response: httpx.Response) -> str:
    try:
        payload = response.json()
        error = payload.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error)
        if error:
            return str(error)
        for key in ("detail", "message"):  # FastAPI servers (transformers serve), TGI
            if payload.get(key):
                return str(payload[key])
    except (ValueError, AttributeError):
        pass
    return response.text.strip().replace("\n", " ")


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
