"""The OpenAI-compatible HTTP backend (vLLM, llama.cpp, transformers serve, KServe, OpenAI): many
requests in flight, retried, and each server's dialect read from what it says.

`complete()` is synchronous: it runs an asyncio loop with `spec.concurrency` workers, each sending one
request at a time; each attempt waits for room under its endpoint's adaptive limit (limit.py: lowered
when latency climbs or requests time out, raised while the server keeps up, `spec.concurrency` the
ceiling; `spec.adaptive_concurrency=False` keeps exactly `spec.concurrency` in flight). Workers share a few small httpx connection pools rather than one big one, because
httpcore's pool bookkeeping grows with the square of its size and would eat the CPU at 64 connections.
`on_result` runs on the loop's thread, one call at a time, as each request finishes: it may append to a
checkpoint file without locks.

Failures are classified by what the server said, not by status code alone (`_http_failure`):
- transport: 429 (rate_limit), 503/529 or "overloaded" (overloaded), other 5xx/408 (server_error),
  timeouts, dropped connections, unparseable bodies: retried up to `spec.max_retries` times with
  exponential backoff and full jitter, waiting at least `Retry-After`;
- unusable replies (not JSON, schema violation, cut off, llama.cpp's 500 for a grammar-bound reply cut
  at max_tokens): re-asked up to `spec.schema_retries` times with another sampling seed (a greedy request
  is re-asked at REASK_TEMPERATURE), the request id unchanged; re-asking stops early when the server
  repeats an unusable reply word for word;
- context length (vLLM's, llama.cpp's, OpenAI's, TGI's and KServe's wordings): when the server says how
  long the prompt is and it fits, the request is sent again with max_tokens capped to the room left;
  a prompt that alone does not fit fails that request with the server's reason;
- a rejected `response_format` (a 400/422 that names it): the schema goes into the prompt instead,
  announced once with the server's words; any other 400 is a failure of that request only;
- a rejected API key, an unknown model (404, or transformers serve's "Server is pinned to ...") or an
  unreachable endpoint raise UserError: every request would fail the same way.

Structured output is probed once per client (one stage) with a tiny schema-bound request when
`spec.response_format` is "auto": a server that enforces the schema keeps `response_format`; one that
ignores it (answers 200 unconstrained, as transformers serve does) or rejects it gets the schema in the
prompt, and every reply is validated strictly either way. The mode is in `stats.dialect`. The probe
runs in the request loop: requests with a schema wait for its verdict, except against a server that
GET /models shows to be vLLM or llama.cpp, where they go out at once in json_schema mode and any that
the verdict would have sent otherwise are sent again (see `_start_probe`).
`max_tokens` is capped to the context the server reports at GET /models (vLLM's `max_model_len`,
llama.cpp's `meta.n_ctx`) or `spec.context_length`, minus the prompt's length (known after the first
reply, estimated before). Requests that still failed after all that are tried once more in a final pass.
Tokens of every attempt, failed or not, are counted (stats and the result's token counts).

Per-endpoint state (probed mode, context length, tokens-per-character) lives in an `_Endpoint`, so the
rules hold for each endpoint of a list.

The API key is read from `os.environ[spec.api_key_env]` and lives only in the request headers; it is
never logged and is scrubbed from any server message that echoes it.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import os
import random
import re
import ssl
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from labpipe.errors import Problem, UserError
from labpipe.llm.client import (
    TRANSIENT_KINDS,
    ChatRequest,
    ChatResult,
    ClientStats,
    ModelSpec,
    failure_kind,
)
from labpipe.llm.endpoints import EndpointPool, RoutedHTTP, split_endpoints
from labpipe.llm.json_extract import NotJSON, check_schema, extract_json, schema_instruction
from labpipe.llm.limit import AdaptiveLimit, Gate
from labpipe.llm.order import PRIORITY, RequestQueue

STRUCTURED_MODES = ("auto", "json_schema", "json_object", "prompt")

log = logging.getLogger(__name__)

POOL_SIZE = 8  # connections per httpx pool; see the module docstring
TRANSIENT = TRANSIENT_KINDS
UNUSABLE = ("not_json", "schema", "truncated")  # replies worth re-asking with another seed
# Failures worth one more try at the end (the server may be back); unusable replies already had their
# distinct re-asks, and the same re-asks again would get the same replies from a seeded server.
FINAL_PASS = TRANSIENT
REPEATED = "the server repeated an earlier unusable reply"
# A re-ask that gets the very reply it re-asked about (a repeat) is asked once more: a short unusable reply
# (`{}` for a one-field schema) comes back twice by chance about once in hundreds of requests from a
# sampling server, and losing that request would cost a record. A second repeat ends the re-asks; and once
# an endpoint has repeated itself for SEED_IGNORED_AFTER requests without ever varying a re-asked reply, it
# ignores the seed, and its first repeat ends them (every later request costs at most 2 attempts).
REPEATS_PER_REQUEST = 1
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
    (re.compile(r"maximum context length is (\d+) tokens.*?contains at least (\d+) input tokens", re.S), 1, 2),
    (re.compile(r"maximum context length is (\d+) tokens.*?messages resulted in (\d+) tokens", re.S), 1, 2),
    (re.compile(r"must be <= (\d+)\. Given: (\d+) `inputs` tokens"), 1, 2),
    (re.compile(r"must have less than (\d+) tokens\. Given: (\d+)"), 1, 2),
    (re.compile(r"max_model_len=(\d+)"), 1, None),
    (re.compile(r"maximum context length is (\d+)"), 1, None),
)
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

# The structured-output probe: a schema no model follows by chance, and a prompt that does not ask for it.
PROBE_SCHEMA = {
    "type": "object",
    "properties": {"labpipe_probe": {"type": "string", "enum": ["ok-7f3a"]}},
    "required": ["labpipe_probe"],
    "additionalProperties": False,
}
PROBE_PROMPT = "Say hello in one short sentence."


@dataclass
class _Outcome:
    """What one attempt came to: a result, or a failure of some `kind` with a message."""

    kind: str  # "ok", one of TRANSIENT or UNUSABLE, "response_format", "context_length", "http"
    message: str = ""
    result: ChatResult | None = None
    retry_after: float | None = None
    text: str = ""  # the reply, for unusable ones (a server that repeats it is not asked again)
    prompt_tokens: int = 0  # what the attempt cost (usage), also when the reply was unusable
    completion_tokens: int = 0
    context: int | None = None  # context_length failures: the context and prompt size the server named
    prompt_size: int | None = None
    cut: bool = False  # the reply stopped at max_tokens


@dataclass
class _Endpoint:
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


def quiet_http_logs() -> None:
    """httpx logs one INFO line per request and httpcore traces every connection step at DEBUG: in a task's
    log (or with `-v`) they bury the progress lines. They show only with LABPIPE_HTTP_DEBUG=1."""
    if os.environ.get("LABPIPE_HTTP_DEBUG") != "1":
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _structured_mode(value: str | bool | None) -> str:
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


def _chars(request: ChatRequest) -> int:
    return sum(len(str(m.get("content") or "")) for m in request.messages)


class OpenAIChatClient:
    """Chat completions against an OpenAI-compatible endpoint; see the module docstring."""

    accepts_follow_ups = True  # on_result may return requests to enqueue (streamed flows)
    # Re-ask rules (benchmarks/bench_reask.py turns both off to measure the old behaviour side by side).
    VARY_REASKS = True  # a re-ask changes the seed (and samples a greedy request)
    STOP_ON_REPEAT = True  # an unusable reply repeated word for word ends the re-asks

    def __init__(self, spec: ModelSpec):
        quiet_http_logs()
        self.spec = spec
        # several comma-separated base URLs: replicas of one model, routed per attempt (endpoints.py)
        self.endpoints = split_endpoints(spec.target) if "," in spec.target else [spec.target.rstrip("/")]
        self.base_url = self.endpoints[0]
        limits = (lambda: AdaptiveLimit(spec.concurrency)) if spec.adaptive_concurrency else None
        self.pool = (
            EndpointPool(
                self.endpoints,
                failures=spec.endpoint_failures,
                cooldown_s=spec.endpoint_cooldown_s,
                limits=limits,
            )
            if len(self.endpoints) > 1
            else None
        )
        self.limit = limits() if limits is not None and self.pool is None else None  # the one endpoint's
        self.stats = ClientStats()
        self._model = spec.model
        self._mode = _structured_mode(spec.response_format)
        self._endpoint = _Endpoint(self.base_url, structured=self._mode)
        if spec.context_length > 0:
            self._endpoint.context_length = spec.context_length
        self._reachable = False
        self._probe_due = False  # complete(): the structured-output probe is to run in the next loop
        self._probing: asyncio.Task | None = None  # the probe, while the loop runs
        self._served: dict[str, Any] = {}  # the GET /models entry of the model, once probed
        self._ssl_context: ssl.SSLContext | None = None
        self._rng = random.Random()
        key = os.environ.get(spec.api_key_env, "")
        self._key_set = bool(key)
        self._headers = httpx.Headers({"Authorization": f"Bearer {key}"} if key else {})
        self._redact = (lambda text: text.replace(key, "***")) if len(key) >= 4 else (lambda text: text)

    def __repr__(self) -> str:
        return f"OpenAIChatClient(target={self.base_url!r}, model={self._model!r}, concurrency={self.spec.concurrency})"

    # setup ----------------------------------------------------------------------------------------

    def httpx_options(self) -> dict[str, Any]:
        """Keyword arguments for every httpx client: base URL, auth header, timeout, TLS trust."""
        return {
            "base_url": self.base_url,
            "headers": self._headers,
            "timeout": httpx.Timeout(self.spec.timeout_s),
            "verify": self._verify(),
        }

    def _verify(self) -> ssl.SSLContext | bool:
        # One context for all pools: loading a trust store costs ~40 ms each time.
        if self._ssl_context is None:
            try:
                from labpipe import net  # the run's trust store (LABPIPE_CA_BUNDLE), else certifi's roots

                self._ssl_context = net.ssl_context(self.spec.ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                raise UserError(
                    Problem(
                        where=self.spec.ca_bundle or "certifi",
                        rule="ca-bundle",
                        field="ca_bundle",
                        message=f"cannot load the CA bundle ({exc})",
                        fix="pass a PEM file with the CA certificate(s)",
                    )
                ) from None
        return self._ssl_context

    @property
    def model_name(self) -> str:
        if self._model is None or not self._reachable:
            self._probe_replicas()
        assert self._model is not None
        return self._model

    def served_identity(self) -> dict[str, Any]:
        """What identifies the model behind the name (for the reply cache's key): what GET /models reports
        about it that depends on its weights, not on this server process (vLLM's `root`, `parent` and
        `max_model_len`; llama.cpp's `meta` without the per-slot `n_ctx`; other servers' `root`), and the
        explicit `spec.revision`. Replicas of one model report the same; another model under the same name
        does not. Empty when the server reports nothing and no revision was given (the name alone)."""
        self.model_name  # noqa: B018 - probes the endpoint once
        entry = self._served
        found: dict[str, Any] = {k: entry[k] for k in ("root", "parent", "max_model_len") if entry.get(k)}
        meta = entry.get("meta")
        if isinstance(meta, dict):
            found["meta"] = {k: v for k, v in sorted(meta.items()) if k != "n_ctx"}
        if self.spec.revision:
            found["revision"] = self.spec.revision
        return found

    def _probe_replicas(self) -> None:
        """`_probe` the first replica that answers: with several endpoints, one down at the start is no error."""
        for i, url in enumerate(self.endpoints):
            self.base_url = url
            try:
                self._probe()
                return
            except UserError as exc:
                last = i == len(self.endpoints) - 1
                if last or not any(p.rule == "endpoint-unreachable" for p in exc.problems):
                    raise
                log.warning("%s is unreachable; probing the next replica", url)
                if self.pool is not None:
                    self.pool.take_out(url)
            finally:
                self.base_url = self.endpoints[0]

    def probe(self) -> tuple[int, list[str]]:
        """The client's own probe of its (first) endpoint, for preflight: (HTTP status of GET /models, the
        model ids it lists). Raises UserError when it cannot connect or the key is refused."""
        self._probe()
        return self.probe_status, self.served_models

    def _probe(self) -> None:
        """GET /models once: checks the endpoint is reachable and the key accepted; picks the model name."""
        attempt = 0
        with httpx.Client(**self.httpx_options()) as http:
            while True:
                try:
                    response = http.get("/models")
                    break
                except httpx.TransportError as exc:
                    reason = self._redact(str(exc) or type(exc).__name__)
                    if "CERTIFICATE_VERIFY_FAILED" in reason or attempt >= self.spec.max_retries:
                        raise self._unreachable(reason) from None
                    time.sleep(self._backoff(attempt))
                    attempt += 1
        self._reachable = True
        if response.status_code in (401, 403):
            raise self._auth_error(response)
        try:
            listed = [m for m in response.json()["data"] if isinstance(m, dict) and m.get("id")]
        except (ValueError, KeyError, TypeError):
            listed = []
        self.probe_status, self.served_models = response.status_code, [str(m["id"]) for m in listed]
        if self._model is not None:
            self._check_named(response, listed)
        if self._model is None:
            if response.status_code != 200 or not listed:
                said = self._redact(_server_message(response))[:200] if response.status_code != 200 else ""
                raise UserError(
                    Problem(
                        where=f"{self.base_url}/models",
                        rule="model",
                        field="model",
                        message=f"no model name given and the endpoint lists none (HTTP {response.status_code}"
                        + (f": {said})" if said else ")"),
                        fix="pass the model name (--teacher-model / --judge-model / --model-endpoint-name); "
                        "for `transformers serve` it is the model path the server was started with",
                    )
                )
            self._model = listed[0]["id"]
        entry = next((m for m in listed if m["id"] == self._model), listed[0] if len(listed) == 1 else None)
        self._served = entry or {}
        if self._endpoint.context_length is None:
            self._endpoint.context_length = _context_length(entry)
        self._endpoint.known_to_enforce = _known_to_enforce(entry)
        self.stats.dialect = self._endpoint.describe()

    def _check_named(self, response: httpx.Response, listed: list[dict[str, Any]]) -> None:
        """The named model is one the endpoint serves: in its GET /models list (ids and aliases), or, when
        the list fails or is empty (`transformers serve` without a hub cache), a one-token chat completion
        that the server does not refuse for its model. Raises UserError (rule `model`) otherwise."""
        if listed:
            names = {str(m["id"]) for m in listed}
            names |= {str(a) for m in listed for a in (m.get("aliases") or []) if isinstance(a, str)}
            if self._model not in names:
                ids = ", ".join(sorted(str(m["id"]) for m in listed)[:10])
                raise UserError(
                    Problem(
                        where=f"{self.base_url}/models",
                        rule="model",
                        field="model",
                        message=f"the endpoint does not serve model {self._model!r} (it lists: {ids})",
                        fix="pass one of the listed ids as the model name (--teacher-model / --judge-model / "
                        "teacher_model / judge_model)",
                    )
                )
            self.stats.dialect = {**self.stats.dialect, "model_checked": "listed"}
            return
        body = {"model": self._model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
        self.stats.probes += 1
        try:
            with httpx.Client(**self.httpx_options()) as http:
                reply = http.post("/chat/completions", json=body)
        except httpx.TransportError:
            return  # the stage's own requests will say what is wrong (and retry)
        if reply.status_code != 200:
            self._http_failure(reply, False)  # raises for an unknown model or a rejected key
            return
        said = f"HTTP {response.status_code}" if response.status_code != 200 else "no models"
        log.info("%s: GET /models: %s; a one-token chat with model %r succeeded", self.base_url, said, self._model)

    def _unreachable(self, reason: str) -> UserError:
        if "CERTIFICATE_VERIFY_FAILED" in reason:
            fix = "the server's TLS certificate is not trusted: pass its CA bundle (--ca-bundle / LABPIPE_CA_BUNDLE, on a cluster the labpipe-ca secret)"
        else:
            fix = "check the URL (an OpenAI-compatible base URL ending in /v1) and that the server is running and reachable from here"
        return UserError(
            Problem(
                where=self.base_url,
                rule="endpoint-unreachable",
                message=f"cannot connect: {reason[:200]}",
                fix=fix,
            ),
            transient="CERTIFICATE_VERIFY_FAILED" not in reason,  # a server down may be back for a retry
        )

    def _auth_error(self, response: httpx.Response) -> UserError:
        state = "is set but was rejected" if self._key_set else "is not set"
        return UserError(
            Problem(
                where=self.base_url,
                rule="api-key",
                field=self.spec.api_key_env,
                message=f"HTTP {response.status_code}: the API key in ${self.spec.api_key_env} {state}",
                fix=f"export {self.spec.api_key_env} with a key valid for this endpoint (or name another variable)",
            )
        )

    # running --------------------------------------------------------------------------------------

    def complete(
        self,
        requests: Sequence[ChatRequest],
        on_result: Callable[[ChatResult], Sequence[ChatRequest] | None] | None = None,
    ) -> list[ChatResult]:
        """Run all requests, `spec.concurrency` in flight; results in request order.

        Requests that `on_result` returns are enqueued and sent in the same run (on the same
        connections); their results follow the given requests' in the returned list.
        A request that failed after all retries in a way worth retrying (FINAL_PASS kinds) is held back
        and tried once more after the others (the final pass); `on_result` sees only its last outcome.
        """
        requests = list(requests)  # grows with follow-up requests while the run goes on
        if not requests:
            return []
        self.model_name  # noqa: B018 - probes the endpoint once, before anything is sent
        self._probe_due = self._endpoint.structured == "auto" and any(r.schema is not None for r in requests)
        held: list[int] = []
        final_pass = self.spec.final_pass

        def deliver(result: ChatResult) -> Sequence[ChatRequest] | None:
            if not result.ok:
                error = result.error or ""
                if final_pass and failure_kind(error) in FINAL_PASS and REPEATED not in error:
                    held.extend(i for i, r in enumerate(requests) if r.request_id == result.request_id)
                    self.stats.failed -= 1  # counted again when the final pass delivers it
                    return None
                self.stats.record_failure(result.error or "")
            return on_result(result) if on_result is not None else None

        results = self._loop(requests, deliver)
        if held:
            held = sorted(set(held))
            self.stats.final_pass += len(held)
            final_pass = False
            log.info("%s: final pass over %d failed request(s)", self.base_url, len(held))
            again = self._loop([requests[i] for i in held], deliver)
            for i, result in zip(held, again, strict=False):
                results[i] = result
            results.extend(again[len(held):])  # follow-ups of requests that succeeded in the final pass
        return results

    def _loop(self, requests: list[ChatRequest], on_result: Callable[[ChatResult], None]) -> list:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._run(requests, on_result))
        # Called from inside an event loop (a notebook): run ours on a thread of its own.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, self._run(requests, on_result)).result()

    def close(self) -> None:
        """Nothing to release: connections live only for the duration of a complete() call."""

    async def _run(
        self,
        requests: list[ChatRequest],
        on_result: Callable[[ChatResult], Sequence[ChatRequest] | None] | None,
    ):
        results: list[ChatResult | None] = [None] * len(requests)
        queue = RequestQueue()  # highest priority first (order.py)
        for i, request in enumerate(requests):
            queue.push(i, request.priority)
        # with on_result, follow-up requests may come: keep every worker until nothing is outstanding
        wanted = self.spec.concurrency if on_result is not None else len(requests)
        n_workers = max(1, min(self.spec.concurrency, wanted))
        n_pools = -(-n_workers // POOL_SIZE)
        limits = httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE)
        if self.pool is None:
            pools = [httpx.AsyncClient(**self.httpx_options(), limits=limits) for _ in range(n_pools)]
            if self.limit is not None:
                pools = [Gate(self.limit, pools)]  # type: ignore[list-item]
        else:
            clients = {
                url: [
                    httpx.AsyncClient(**{**self.httpx_options(), "base_url": url}, limits=limits)
                    for _ in range(n_pools)
                ]
                for url in self.endpoints
            }
            pools = [RoutedHTTP(self.pool, clients)]  # type: ignore[list-item]
        outstanding = [len(requests)]  # queued or in flight
        wake = asyncio.Event()

        async def worker(w: int) -> None:
            http = pools[w % len(pools)]
            while True:
                if not queue:
                    if outstanding[0] == 0:
                        wake.set()
                        return
                    wake.clear()
                    await wake.wait()
                    continue
                i = queue.pop()
                PRIORITY.set(requests[i].priority)  # the order in which the gate admits waiting requests
                result = await self._one(http, requests[i])
                results[i] = result
                if result.ok:
                    self.stats.completed += 1
                else:
                    self.stats.failed += 1
                more = on_result(result) if on_result is not None else None
                more = list(more) if isinstance(more, list | tuple) else []  # anything else: no follow-ups
                for request in more:  # queued by their priority (a streamed flow's chain lengths)
                    queue.push(len(requests), request.priority)
                    requests.append(request)
                    results.append(None)
                outstanding[0] += len(more)
                outstanding[0] -= 1
                if queue or outstanding[0] == 0:
                    wake.set()

        self._start_probe()
        tasks = [asyncio.create_task(worker(w)) for w in range(n_workers)]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()
            await self._end_probe()
        finally:
            await self._end_probe(cancel=True)
            await asyncio.gather(*(p.aclose() for p in pools), return_exceptions=True)
        if self.pool is not None:
            log.info("endpoints: %s", self.pool.describe())
        elif self.limit is not None:
            log.info("%s: concurrency %s", self.base_url, self.limit.describe())
        return results

    async def _one(self, http: httpx.AsyncClient, request: ChatRequest) -> ChatResult:
        ep = self._endpoint
        transient = reasks = attempts = 0
        spent_prompt = spent_completion = 0
        prompt_size: int | None = None  # the prompt's length in tokens, once the server said it
        boost = 1  # grows when a reply was cut at max_tokens
        context_retried = False
        seen: set[str] = set()  # unusable replies already received (see REPEATS_PER_REQUEST)
        repeats = 0
        while True:
            if ep.context_length and prompt_size is not None and prompt_size >= ep.context_length:
                return ChatResult(  # the server told us the prompt's size: it cannot fit, do not send
                    request.request_id,
                    attempts=attempts,
                    error=f"context_length: the prompt's {prompt_size} tokens leave no room for a reply "
                    f"in the context of {ep.context_length} tokens",
                    prompt_tokens=spent_prompt,
                    completion_tokens=spent_completion,
                )
            attempts += 1
            mode, provisional = await self._mode_for(ep, request)
            max_tokens = self._max_tokens(ep, request, prompt_size, boost)
            outcome = await self._attempt(http, request, mode, max_tokens, reasks if self.VARY_REASKS else 0)
            spent_prompt += outcome.prompt_tokens
            spent_completion += outcome.completion_tokens
            if outcome.prompt_tokens:
                prompt_size = outcome.prompt_tokens
                ep.learn(_chars(request), outcome.prompt_tokens)
            if reasks and self.STOP_ON_REPEAT:  # what a re-ask got: evidence whether the server varies
                if outcome.text and outcome.text in seen:
                    ep.repeated += 1 if repeats == 0 else 0
                elif repeats == 0 and reasks == 1 and outcome.kind in ("ok", *UNUSABLE):
                    ep.varied += 1
            if outcome.kind == "ok":
                assert outcome.result is not None
                outcome.result.attempts = attempts
                outcome.result.prompt_tokens = spent_prompt
                outcome.result.completion_tokens = spent_completion
                return outcome.result
            self.stats.errors[outcome.kind] += 1
            if provisional and await self._decided_otherwise(ep, outcome):
                continue  # sent again in the mode the probe decided: neither a retry nor a re-ask
            delay = 0.0
            if (
                outcome.kind == "response_format"
                and mode in ("json_schema", "json_object")
                and self._mode == "auto"
            ):
                self._fall_back(ep, outcome.message)
            elif outcome.kind == "context_length" and not context_retried and self._context_room(ep, outcome):
                context_retried = True
                prompt_size = outcome.prompt_size or prompt_size
            elif outcome.kind in TRANSIENT and transient < self.spec.max_retries:
                delay = self._backoff(transient, outcome.retry_after)
                transient += 1
            elif (
                outcome.kind in UNUSABLE
                and reasks < self.spec.schema_retries
                and not self._stop_repeat(ep, outcome, seen, repeats)
            ):
                if outcome.text and outcome.text in seen:
                    repeats += 1
                elif outcome.text and self.STOP_ON_REPEAT:
                    seen.add(outcome.text)
                reasks += 1
                if outcome.cut and self.VARY_REASKS and (ep.context_length or boost < 2):
                    boost *= 2  # with no known context, once: a server that ignores the seed would grow it forever
            else:
                message = outcome.message
                if outcome.kind in UNUSABLE and outcome.text and outcome.text in seen:
                    message += f" ({REPEATED}: not asked again)"
                if outcome.kind == "context_length" and outcome.context:
                    size = f"the prompt's {outcome.prompt_size} tokens leave" if outcome.prompt_size else "the prompt leaves"
                    message = f"{size} no room for a reply in the context of {outcome.context} tokens ({message})"
                return ChatResult(
                    request.request_id,
                    attempts=attempts,
                    error=f"{outcome.kind}: {message}",
                    prompt_tokens=spent_prompt,
                    completion_tokens=spent_completion,
                )
            self.stats.retries += 1
            log.debug(
                "retrying %s in %.2fs after %s: %s", request.request_id, delay, outcome.kind, outcome.message
            )
            await asyncio.sleep(delay)

    def _stop_repeat(self, ep: _Endpoint, outcome: _Outcome, seen: set[str], repeats: int) -> bool:
        """Whether an unusable reply ends the re-asks because it repeats one already received."""
        if not self.STOP_ON_REPEAT or not outcome.text or outcome.text not in seen:
            return False
        return ep.ignores_seed or repeats >= REPEATS_PER_REQUEST

    def _fall_back(self, ep: _Endpoint, said: str) -> None:
        """The server rejected response_format: the schema goes into the prompt from now on (said once)."""
        if ep.structured != "prompt":
            ep.structured = "prompt"
            ep.structured_reason = f"response_format rejected: {said}"
            self.stats.dialect = ep.describe()
            log.warning(
                "%s rejected response_format (%s); putting the schema in the prompt instead",
                ep.base_url,
                said,
            )

    def _context_room(self, ep: _Endpoint, outcome: _Outcome) -> bool:
        """Learn the context length from a context error; True when a capped retry can fit."""
        if outcome.context:
            ep.context_length = min(ep.context_length or outcome.context, outcome.context)
            self.stats.dialect = ep.describe()
        if not ep.context_length:
            return False
        if outcome.prompt_size is None:
            return outcome.context is not None  # capped by the estimate from now on
        return ep.context_length - outcome.prompt_size >= 1

    def _max_tokens(self, ep: _Endpoint, request: ChatRequest, prompt_size: int | None, boost: int) -> int:
        wanted = request.max_tokens * boost
        if not ep.context_length:
            return wanted
        used = prompt_size if prompt_size is not None else ep.estimate_prompt_tokens(_chars(request))
        room = ep.context_length - used
        return max(1, min(wanted, room))

    def _backoff(self, retry: int, retry_after: float | None = None) -> float:
        delay = self._rng.uniform(0, min(self.spec.backoff_max_s, self.spec.backoff_base_s * 2**retry))
        return max(delay, retry_after or 0.0)

    def _body(self, request: ChatRequest, mode: str, max_tokens: int, reask: int = 0) -> dict[str, Any]:
        messages = [dict(m) for m in request.messages]
        body: dict[str, Any] = {
            "model": self.model_name,
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

    async def _attempt(
        self, http: httpx.AsyncClient, request: ChatRequest, mode: str, max_tokens: int, reask: int = 0
    ) -> _Outcome:
        body = self._body(request, mode, max_tokens, reask)
        self.stats.requests += 1
        self.stats.in_flight += 1
        try:
            response = await http.post("/chat/completions", json=body)
        except httpx.TimeoutException:
            return _Outcome("timeout", f"no reply within {self.spec.timeout_s:g}s")
        except httpx.TransportError as exc:
            return _Outcome("connection", self._redact(str(exc) or type(exc).__name__)[:300])
        finally:
            self.stats.in_flight -= 1
        if response.status_code != 200:
            outcome = self._http_failure(response, "response_format" in body)
            if outcome.cut and not outcome.completion_tokens:
                # llama.cpp's 500 for a grammar-bound reply cut at max_tokens carries no usage: the server
                # generated max_tokens tokens for it, and they are paid for
                outcome.completion_tokens = max_tokens
                self.stats.completion_tokens += max_tokens
            return outcome
        try:
            payload = response.json()
            choice = payload["choices"][0]
            text = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            return _Outcome("bad_response", f"unparseable response body ({len(response.content)} bytes)")
        usage = payload.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
        # Every attempt is paid for, usable or not: count it before judging the reply.
        self.stats.prompt_tokens += prompt_tokens
        self.stats.completion_tokens += completion_tokens
        spent = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        result = ChatResult(request.request_id, text=text, **spent)
        if request.schema is not None:
            cut = choice.get("finish_reason") == "length"
            try:
                result.data = extract_json(text)
            except NotJSON as exc:
                note = f" (cut at max_tokens={max_tokens})" if cut else ""
                return _Outcome(
                    "truncated" if cut else "not_json", f"{exc}{note}", text=text, cut=cut, **spent
                )
            reason = check_schema(result.data, request.schema)
            if reason:
                return _Outcome("schema", reason, text=text, **spent)
        return _Outcome("ok", result=result, **spent)

    def _http_failure(self, response: httpx.Response, had_response_format: bool) -> _Outcome:
        """Classify a non-200 reply by what the server said (see the module docstring)."""
        status = response.status_code
        said = self._redact(_server_message(response))
        message = f"HTTP {status}: {said[:1000]}"
        if status in (401, 403):
            raise self._auth_error(response)
        if (status == 404 and "model" in said.lower()) or (
            status in (400, 404, 422) and _UNKNOWN_MODEL.search(said)
        ):
            raise UserError(
                Problem(
                    where=self.base_url,
                    rule="model",
                    field="model",
                    message=f"the endpoint does not serve model {self._model!r} ({message})",
                    fix="pass a model name the endpoint serves (GET /v1/models; for `transformers serve`, "
                    "the model path it was started with)",
                )
            )
        if status == 429:
            return _Outcome("rate_limit", message, retry_after=_retry_after(response))
        if _CONTEXT_TOO_LONG.search(said) and status < 500:
            context, prompt = _context_numbers(said, response)
            return _Outcome("context_length", message, context=context, prompt_size=prompt)
        if status >= 500 and had_response_format and _CUT_STRUCTURED.search(said):
            return _Outcome("truncated", f"{message} (a schema-bound reply cut at max_tokens)", cut=True)
        if status in (503, 529) or (status >= 500 and _OVERLOADED.search(said)):
            return _Outcome("overloaded", message, retry_after=_retry_after(response))
        if status >= 500 or status == 408:
            return _Outcome("server_error", message, retry_after=_retry_after(response))
        if had_response_format and status in (400, 422, 501) and _RESPONSE_FORMAT.search(said):
            return _Outcome("response_format", message)
        return _Outcome("http", message)

    # the structured-output probe --------------------------------------------------------------------

    # The probe runs in the request loop, as a task of its own (`_start_probe`). A request with a schema
    # waits for its verdict (`_mode_for`), except against a server whose GET /models says it enforces
    # response_format (vLLM, llama.cpp: `_known_to_enforce`): there the requests go out in json_schema mode
    # while the probe is out ("provisional"), and the probe still decides: a provisional reply that is
    # usable is kept (validated strictly, as every reply), one that is unusable or refused for its
    # response_format is sent again in the decided mode when the probe says otherwise
    # (`_decided_otherwise`). So the flow does not wait for the probe where the server is known.

    def _start_probe(self) -> None:
        due, self._probe_due = self._probe_due, False
        self._probing = asyncio.create_task(self._probe_structured(self._endpoint)) if due else None

    async def _end_probe(self, cancel: bool = False) -> None:
        """Await the probe (its error, e.g. a refused key, is the run's); with `cancel`, drop it."""
        probing, self._probing = self._probing, None
        if probing is None:
            return
        if cancel:
            probing.cancel()
            await asyncio.gather(probing, return_exceptions=True)
        else:
            await probing

    async def _mode_for(self, ep: _Endpoint, request: ChatRequest) -> tuple[str, bool]:
        """The structured mode to send `request` in, and whether it is provisional (the probe is out)."""
        if request.schema is None:
            return "none", False
        probing = self._probing
        if ep.structured == "auto" and probing is not None and not probing.done():
            if ep.known_to_enforce:
                return "json_schema", True
            await asyncio.shield(probing)
        return ep.structured, False

    async def _decided_otherwise(self, ep: _Endpoint, outcome: _Outcome) -> bool:
        """A provisional attempt came back unusable or refused: True when the probe decided for another
        mode than json_schema (the request is then sent again in that mode)."""
        probing = self._probing
        if outcome.kind not in (*UNUSABLE, "response_format") or probing is None:
            return False
        await asyncio.shield(probing)
        return ep.structured not in ("json_schema", "auto")

    async def _probe_structured(self, ep: _Endpoint) -> None:
        """One tiny schema-bound request: does this server enforce response_format? Sets ep.structured."""
        body = {
            "model": self.model_name,
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
        async with httpx.AsyncClient(**self.httpx_options()) as http:
            for attempt in range(self.spec.max_retries + 1):
                self.stats.probes += 1
                try:
                    response = await http.post("/chat/completions", json=body)
                except httpx.TransportError as exc:
                    reason = f"probe failed: {self._redact(str(exc) or type(exc).__name__)[:200]}"
                    await asyncio.sleep(self._backoff(attempt))
                    continue
                if response.status_code == 200:
                    mode, reason = self._probe_reply(response)
                    break
                outcome = self._http_failure(response, True)
                if outcome.kind in TRANSIENT:
                    reason = f"probe failed: {outcome.message}"
                    await asyncio.sleep(self._backoff(attempt, outcome.retry_after))
                    continue
                if outcome.kind == "truncated":  # llama.cpp: the grammar was applied, the reply cut
                    mode, reason = "json_schema", ""
                elif outcome.kind == "response_format":
                    mode, reason = "prompt", f"response_format rejected: {outcome.message}"
                else:
                    mode, reason = "prompt", f"the probe failed ({outcome.message})"
                break
        ep.structured, ep.structured_reason = mode, reason
        self.stats.dialect = ep.describe()
        if mode == "prompt":
            log.warning("%s: schema in the prompt, replies validated strictly: %s", ep.base_url, reason)
        else:
            log.info(
                "%s: structured output enforced by the server (response_format json_schema)", ep.base_url
            )

    def _probe_reply(self, response: httpx.Response) -> tuple[str, str]:
        try:
            payload = response.json()
            choice = payload["choices"][0]
            text = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            return "prompt", "the probe's reply was unparseable"
        usage = payload.get("usage") or {}
        self.stats.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.stats.completion_tokens += int(usage.get("completion_tokens") or 0)
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


def _context_length(entry: dict | None) -> int | None:
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


def _known_to_enforce(entry: dict | None) -> bool:
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


def _context_numbers(said: str, response: httpx.Response) -> tuple[int | None, int | None]:
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


def _server_message(response: httpx.Response) -> str:
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


def _retry_after(response: httpx.Response) -> float | None:
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
