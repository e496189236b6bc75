"""Structured output: how an endpoint takes a JSON schema, decided once per client (one stage).

With `spec.response_format` "auto", one tiny schema-bound request (`probe_structured`) finds out: a
server that enforces the schema keeps `response_format` (json_schema); one that ignores it (answers 200
unconstrained, as transformers serve does) or rejects it gets the schema in the prompt (prompt). Every
reply is validated strictly either way. A server that rejects response_format later, mid-run, falls
back to the prompt too (`fall_back`), said once. The mode is in the client's `stats.dialect`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx

from labpipe.errors import Problem, UserError
from labpipe.llm.dialects import EndpointState, Outcome, read_choice
from labpipe.llm.failures import TRANSIENT_KINDS
from labpipe.llm.json_extract import NotJSON, check_schema, extract_json
from labpipe.llm.types import ClientStats

STRUCTURED_MODES = ("auto", "json_schema", "json_object", "prompt")

log = logging.getLogger(__name__)

# The probe: a schema no model follows by chance, and a prompt that does not ask for it.
PROBE_SCHEMA = {
    "type": "object",
    "properties": {"labpipe_probe": {"type": "string", "enum": ["ok-7f3a"]}},
    "required": ["labpipe_probe"],
    "additionalProperties": False,
}
PROBE_PROMPT = "Say hello in one short sentence."


def structured_mode(value: str | bool | None) -> str:
    """spec.response_format as a mode of STRUCTURED_MODES (True/False: json_schema/prompt)."""
    if value is True:
        return "json_schema"
    if value is False:
        return "prompt"
    if value is None or value == "":
        return "auto"
    if value not in STRUCTURED_MODES:
        raise UserError(
            Problem(
                "response_format",
                "response-format",
                f"unknown structured-output mode {value!r}",
                f"one of {', '.join(STRUCTURED_MODES)}",
                field="response_format",
            )
        )
    return value


def probe_structured(
    http: httpx.Client,
    model: str,
    ep: EndpointState,
    stats: ClientStats,
    *,
    attempts: int,
    backoff: Callable[[int, float | None], float],
    failure: Callable[[httpx.Response, bool], Outcome],
    redact: Callable[[str], str],
) -> None:
    """One tiny schema-bound request: does this server enforce response_format? Sets ep.structured.

    `attempts` tries for transient failures, `backoff(retry, retry_after)` seconds apart; `failure`
    reads a non-200 reply (and raises for a rejected key or an unknown model)."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROBE_PROMPT}],
        "temperature": 0.0,
        "max_tokens": 48,
        "seed": 0,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "probe", "schema": PROBE_SCHEMA},
        },
    }
    mode, reason = "json_schema", ""
    for attempt in range(attempts):
        stats.probes += 1
        try:
            response = http.post("/chat/completions", json=body)
        except httpx.TransportError as exc:
            reason = f"probe failed: {redact(str(exc) or type(exc).__name__)[:200]}"
            time.sleep(backoff(attempt, None))
            continue
        if response.status_code == 200:
            mode, reason = _probe_reply(response, stats)
            break
        outcome = failure(response, True)
        if outcome.kind in TRANSIENT_KINDS:
            reason = f"probe failed: {outcome.message}"
            time.sleep(backoff(attempt, outcome.retry_after))
            continue
        if outcome.kind == "truncated":  # llama.cpp: the grammar was applied, the reply cut
            mode, reason = "json_schema", ""
        elif outcome.kind == "response_format":
            mode, reason = "prompt", f"response_format rejected: {outcome.message}"
        else:
            mode, reason = "prompt", f"the probe failed ({outcome.message})"
        break
    ep.structured, ep.structured_reason = mode, reason
    stats.dialect = ep.describe()
    if mode == "prompt":
        log.warning("%s: schema in the prompt, replies validated strictly: %s", ep.base_url, reason)
    else:
        log.info("%s: structured output enforced by the server (response_format json_schema)", ep.base_url)


def _probe_reply(response: httpx.Response, stats: ClientStats) -> tuple[str, str]:
    read = read_choice(response)
    if read is None:
        return "prompt", "the probe's reply was unparseable"
    choice, text, spent = read
    stats.prompt_tokens += spent["prompt_tokens"]
    stats.completion_tokens += spent["completion_tokens"]
    try:
        if check_schema(extract_json(text), PROBE_SCHEMA) is None:
            return "json_schema", ""
    except NotJSON:
        pass
    if choice.get("finish_reason") == "length" and text.lstrip().startswith("{"):
        return "json_schema", ""  # constrained, only cut short
    return "prompt", (
        "the server answered 200 without following the response_format schema (it ignores the field): "
        f"{text[:80]!r}"
    )


def fall_back(ep: EndpointState, stats: ClientStats, said: str) -> None:
    """The server rejected response_format: the schema goes into the prompt from now on (said once)."""
    if ep.structured != "prompt":
        ep.structured = "prompt"
        ep.structured_reason = f"response_format rejected: {said}"
        stats.dialect = ep.describe()
        log.warning(
            "%s rejected response_format (%s); putting the schema in the prompt instead", ep.base_url, said
        )
