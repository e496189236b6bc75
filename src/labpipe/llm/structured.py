"""Structured output: how an endpoint takes a JSON schema, decided once per client (one stage).

With `spec.response_format` "auto", one tiny schema-bound request (`probe_structured`) finds out: a
server that enforces the schema keeps `response_format` (json_schema); one that ignores it (answers 200
unconstrained, as transformers serve does) or rejects it gets the schema in the prompt (prompt). Every
reply is validated strictly either way. A server that rejects response_format later, mid-run, falls
back to the prompt too (`fall_back`), said once. The mode is in the client's `stats.dialect`.

The probe runs in the request loop, as a task of its own (`LoopProbe`). A request with a schema waits for
its verdict, except against a server whose GET /models says it enforces response_format (vLLM, llama.cpp:
dialects.known_to_enforce): there the requests go out in json_schema mode while the probe is out
("provisional"), and the probe still decides: a provisional reply that is usable is kept (validated
strictly, as every reply), one that is unusable or refused for its response_format is sent again in the
decided mode when the probe says otherwise. So the flow does not wait for the probe where the server is
known.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import httpx

from labpipe.errors import Problem, UserError
from labpipe.llm.dialects import UNUSABLE, EndpointState, Outcome, read_choice
from labpipe.llm.failures import TRANSIENT_KINDS
from labpipe.llm.json_extract import NotJSON, check_schema, extract_json
from labpipe.llm.types import ChatRequest, ClientStats

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


async def probe_structured(
    http: httpx.AsyncClient,
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
            response = await http.post("/chat/completions", json=body)
        except httpx.TransportError as exc:
            reason = f"probe failed: {redact(str(exc) or type(exc).__name__)[:200]}"
            await asyncio.sleep(backoff(attempt, None))
            continue
        if response.status_code == 200:
            mode, reason = _probe_reply(response, stats)
            break
        outcome = failure(response, True)
        if outcome.kind in TRANSIENT_KINDS:
            reason = f"probe failed: {outcome.message}"
            await asyncio.sleep(backoff(attempt, outcome.retry_after))
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


class LoopProbe:
    """`probe` (an async probe_structured of `ep`) run in the request loop; see the module docstring.

    The client sets `due` before a run; the transport calls `start` in its loop before the workers and
    `end` after them (`cancel` when the run failed); each request asks `mode_for`, and a provisional
    attempt that failed asks `decided_otherwise`."""

    def __init__(self, ep: EndpointState, probe: Callable[[], Awaitable[None]]):
        self.ep, self._probe = ep, probe
        self.due = False  # the probe is to run in the next loop
        self._task: asyncio.Task | None = None  # the probe, while the loop runs

    def start(self) -> None:
        due, self.due = self.due, False
        self._task = asyncio.create_task(self._probe()) if due else None

    async def end(self, cancel: bool = False) -> None:
        """Await the probe (its error, e.g. a refused key, is the run's); with `cancel`, drop it."""
        task, self._task = self._task, None
        if task is None:
            return
        if cancel:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        else:
            await task

    async def mode_for(self, request: ChatRequest) -> tuple[str, bool]:
        """The structured mode to send `request` in, and whether it is provisional (the probe is out)."""
        if request.schema is None:
            return "none", False
        task = self._task
        if self.ep.structured == "auto" and task is not None and not task.done():
            if self.ep.known_to_enforce:
                return "json_schema", True
            await asyncio.shield(task)
        return self.ep.structured, False

    async def decided_otherwise(self, outcome: Outcome) -> bool:
        """A provisional attempt came back unusable or refused: True when the probe decided for another
        mode than json_schema (the request is then sent again in that mode)."""
        task = self._task
        if outcome.kind not in (*UNUSABLE, "response_format") or task is None:
            return False
        await asyncio.shield(task)
        return self.ep.structured not in ("json_schema", "auto")


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
