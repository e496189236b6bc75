"""The OpenAI-compatible HTTP backend (vLLM, llama.cpp, transformers serve, KServe, OpenAI): many
requests in flight, retried, and each server's dialect read from what it says.

The client composes four parts, each readable alone:
- transport.py: connections, replicas, the adaptive limit, one HTTP attempt, the worker pool;
- dialects.py: how each server is asked and what it says is read (context-length errors, a rejected or
  ignored response_format, seeds, usage); a new server rule goes there;
- structured.py: the structured-output mode and its one-time probe, run in the request loop (requests
  against a server that GET /models shows to be vLLM or llama.cpp do not wait for it);
- this module: what the model is (GET /models), and each request's retry policy (`_one`):
  - transport failures (TRANSIENT_KINDS: 429, 5xx, timeouts, dropped connections, unparseable bodies) are
    retried up to `spec.max_retries` times with exponential backoff and full jitter, at least
    `Retry-After`;
  - unusable replies (not JSON, schema violation, cut off) are re-asked up to `spec.schema_retries` times
    with another sampling seed (a greedy request at REASK_TEMPERATURE), the request id unchanged;
    re-asking stops early when the server repeats an unusable reply word for word;
  - a context-length error where the prompt fits: sent again with max_tokens capped to the room left;
    a prompt that alone does not fit fails that request with the server's reason;
  - a rejected `response_format`: the schema goes into the prompt instead, announced once;
  - any other 400 is a failure of that request only; a rejected key, an unknown model or an unreachable
    endpoint raise UserError: every request would fail the same way.

`max_tokens` is capped to the context the server reports at GET /models (vLLM's `max_model_len`,
llama.cpp's `meta.n_ctx`) or `spec.context_length`, minus the prompt's length (known after the first
reply, estimated before). Requests that still failed after all that are tried once more in a final pass.
Tokens of every attempt, failed or not, are counted (stats and the result's token counts). Per-endpoint
state lives in a dialects.EndpointState, so the rules hold for each endpoint of a list.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from labpipe.errors import Problem, UserError
from labpipe.llm.dialects import (
    UNUSABLE,
    EndpointState,
    Outcome,
    chars,
    known_to_enforce,
    read_reply,
    request_body,
    served_context_length,
    served_identity,
    server_message,
)
from labpipe.llm.failures import TRANSIENT_KINDS
from labpipe.llm.structured import LoopProbe, fall_back, probe_structured, structured_mode
from labpipe.llm.transport import Transport
from labpipe.llm.types import ChatRequest, ChatResult, ClientStats, ModelSpec, failure_kind

log = logging.getLogger(__name__)

TRANSIENT = TRANSIENT_KINDS
# Failures worth one more try at the end (the server may be back); unusable replies already had their
# distinct re-asks, and the same re-asks again would get the same replies from a seeded server.
FINAL_PASS = TRANSIENT
REPEATED = "the server repeated an earlier unusable reply"
# A re-ask that gets the very reply it re-asked about (a repeat) is asked once more: a short unusable reply
# (`{}` for a one-field schema) comes back twice by chance about once in hundreds of requests from a
# sampling server, and losing that request would cost a record. A second repeat ends the re-asks; and once
# an endpoint has repeated itself for dialects.SEED_IGNORED_AFTER requests without ever varying a re-asked
# reply, it ignores the seed, and its first repeat ends them (every later request costs at most 2 attempts).
REPEATS_PER_REQUEST = 1


class OpenAIChatClient:
    """Chat completions against an OpenAI-compatible endpoint; see the module docstring."""

    accepts_follow_ups = True  # on_result may return requests to enqueue (streamed flows)
    # Re-ask rules (benchmarks/bench_reask.py turns both off to measure the old behaviour side by side).
    VARY_REASKS = True  # a re-ask changes the seed (and samples a greedy request)
    STOP_ON_REPEAT = True  # an unusable reply repeated word for word ends the re-asks

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.stats = ClientStats()
        self.transport = Transport(spec, self.stats)
        self.endpoints = self.transport.endpoints
        self.pool, self.limit = self.transport.pool, self.transport.limit
        self._model = spec.model
        self._mode = structured_mode(spec.response_format)
        self._endpoint = EndpointState(self.transport.base_url, structured=self._mode)
        if spec.context_length > 0:
            self._endpoint.context_length = spec.context_length
        self._reachable = False
        self._probe_loop = LoopProbe(self._endpoint, self._probe_structured)
        self._served: dict[str, Any] = {}  # the GET /models entry of the model, once probed

    def __repr__(self) -> str:
        return f"OpenAIChatClient(target={self.base_url!r}, model={self._model!r}, concurrency={self.spec.concurrency})"

    @property
    def base_url(self) -> str:
        return self.transport.base_url

    def httpx_options(self) -> dict[str, Any]:
        """Keyword arguments for every httpx client: base URL, auth header, timeout, TLS trust."""
        return self.transport.httpx_options()

    def _failure(self, response: httpx.Response, had_response_format: bool) -> Outcome:
        return self.transport.failure(response, had_response_format, self._model)

    # what the endpoint serves ---------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        if self._model is None or not self._reachable:
            self._probe_replicas()
        assert self._model is not None
        return self._model

    def served_identity(self) -> dict[str, Any]:
        """What identifies the model behind the name (for the reply cache's key): dialects.served_identity
        of its GET /models entry and `spec.revision`. Replicas of one model report the same; another model
        under the same name does not. Empty when the server reports nothing and no revision was given."""
        self.model_name  # noqa: B018 - probes the endpoint once
        return served_identity(self._served, self.spec.revision)

    def _probe_replicas(self) -> None:
        """`_probe` the first replica that answers: with several endpoints, one down at the start is no error."""
        for i, url in enumerate(self.endpoints):
            self.transport.base_url = url
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
                self.transport.base_url = self.endpoints[0]

    def probe(self) -> tuple[int, list[str]]:
        """The client's own probe of its (first) endpoint, for preflight: (HTTP status of GET /models, the
        model ids it lists). Raises UserError when it cannot connect or the key is refused."""
        self._probe()
        return self.probe_status, self.served_models

    def _probe(self) -> None:
        """GET /models once: checks the endpoint is reachable and the key accepted; picks the model name."""
        response = self.transport.get_models()
        self._reachable = True
        if response.status_code in (401, 403):
            raise self.transport.auth_error(response)
        try:
            listed = [m for m in response.json()["data"] if isinstance(m, dict) and m.get("id")]
        except (ValueError, KeyError, TypeError):
            listed = []
        self.probe_status, self.served_models = response.status_code, [str(m["id"]) for m in listed]
        if self._model is not None:
            self._check_named(response, listed)
        if self._model is None:
            if response.status_code != 200 or not listed:
                said = (
                    self.transport.redact(server_message(response))[:200]
                    if response.status_code != 200
                    else ""
                )
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
            self._endpoint.context_length = served_context_length(entry)
        self._endpoint.known_to_enforce = known_to_enforce(entry)
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
            self._failure(reply, False)  # raises for an unknown model or a rejected key
            return
        said = f"HTTP {response.status_code}" if response.status_code != 200 else "no models"
        log.info(
            "%s: GET /models: %s; a one-token chat with model %r succeeded", self.base_url, said, self._model
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
        # the structured-output probe runs in the request loop (structured.LoopProbe)
        self._probe_loop.due = self._endpoint.structured == "auto" and any(
            r.schema is not None for r in requests
        )
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

        results = self.transport.run(requests, self._one, deliver, self._probe_loop)
        if held:
            held = sorted(set(held))
            self.stats.final_pass += len(held)
            final_pass = False
            log.info("%s: final pass over %d failed request(s)", self.base_url, len(held))
            again = self.transport.run([requests[i] for i in held], self._one, deliver)
            for i, result in zip(held, again, strict=False):
                results[i] = result
            results.extend(again[len(held) :])  # follow-ups of requests that succeeded in the final pass
        return results

    def close(self) -> None:
        """Nothing to release: connections live only for the duration of a complete() call."""

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
            mode, provisional = await self._probe_loop.mode_for(request)
            max_tokens = ep.max_tokens(request, prompt_size, boost)
            outcome = await self._attempt(http, request, mode, max_tokens, reasks if self.VARY_REASKS else 0)
            spent_prompt += outcome.prompt_tokens
            spent_completion += outcome.completion_tokens
            if outcome.prompt_tokens:
                prompt_size = outcome.prompt_tokens
                ep.learn(chars(request), outcome.prompt_tokens)
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
            if provisional and await self._probe_loop.decided_otherwise(outcome):
                continue  # sent again in the mode the probe decided: neither a retry nor a re-ask
            delay = 0.0
            if (
                outcome.kind == "response_format"
                and mode in ("json_schema", "json_object")
                and self._mode == "auto"
            ):
                fall_back(ep, self.stats, outcome.message)
            elif outcome.kind == "context_length" and not context_retried and self._context_room(outcome):
                context_retried = True
                prompt_size = outcome.prompt_size or prompt_size
            elif outcome.kind in TRANSIENT and transient < self.spec.max_retries:
                delay = self.transport.backoff(transient, outcome.retry_after)
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
                    boost *= (
                        2  # with no known context, once: a server that ignores the seed would grow it forever
                    )
            else:
                message = outcome.message
                if outcome.kind in UNUSABLE and outcome.text and outcome.text in seen:
                    message += f" ({REPEATED}: not asked again)"
                if outcome.kind == "context_length" and outcome.context:
                    size = (
                        f"the prompt's {outcome.prompt_size} tokens leave"
                        if outcome.prompt_size
                        else "the prompt leaves"
                    )
                    message = (
                        f"{size} no room for a reply in the context of {outcome.context} tokens ({message})"
                    )
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

    def _stop_repeat(self, ep: EndpointState, outcome: Outcome, seen: set[str], repeats: int) -> bool:
        """Whether an unusable reply ends the re-asks because it repeats one already received."""
        if not self.STOP_ON_REPEAT or not outcome.text or outcome.text not in seen:
            return False
        return ep.ignores_seed or repeats >= REPEATS_PER_REQUEST

    def _context_room(self, outcome: Outcome) -> bool:
        """Learn the context length from a context error; True when a capped retry can fit."""
        room = self._endpoint.learn_context(outcome)
        if outcome.context:
            self.stats.dialect = self._endpoint.describe()
        return room

    async def _attempt(
        self, http: httpx.AsyncClient, request: ChatRequest, mode: str, max_tokens: int, reask: int = 0
    ) -> Outcome:
        body = request_body(request, self.model_name, mode, max_tokens, reask)
        response = await self.transport.post(http, body)
        if isinstance(response, Outcome):
            return response
        if response.status_code != 200:
            outcome = self._failure(response, "response_format" in body)
            if outcome.cut and not outcome.completion_tokens:
                # llama.cpp's 500 for a grammar-bound reply it could not parse carries no usage. Most often
                # the reply was cut, i.e. max_tokens were generated and paid for: counted so (an upper bound
                # when the parser refused a shorter reply)
                outcome.completion_tokens = max_tokens
                self.stats.completion_tokens += max_tokens
            return outcome
        outcome = read_reply(response, request, max_tokens)
        # Every attempt is paid for, usable or not.
        self.stats.prompt_tokens += outcome.prompt_tokens
        self.stats.completion_tokens += outcome.completion_tokens
        return outcome

    async def _probe_structured(self) -> None:
        """structured.probe_structured on the probed endpoint, with this client's retries and reading."""
        async with httpx.AsyncClient(**self.httpx_options()) as http:
            await probe_structured(
                http,
                self.model_name,
                self._endpoint,
                self.stats,
                attempts=self.spec.max_retries + 1,
                backoff=self.transport.backoff,
                failure=self._failure,
                redact=self.transport.redact,
            )
