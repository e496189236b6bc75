"""The OpenAI-compatible HTTP backend (vLLM, llama.cpp, KServe, OpenAI): many requests in flight, retried.

`complete()` is synchronous: it runs an asyncio loop with `spec.concurrency` workers, each sending one
request at a time. Workers share a few small httpx connection pools rather than one big one, because
httpcore's pool bookkeeping grows with the square of its size and would eat the CPU at 64 connections.
`on_result` runs on the loop's thread, one call at a time, as each request finishes: it may append to a
checkpoint file without locks.

Retries: 429, 5xx, timeouts, dropped connections and unparseable bodies are retried up to
`spec.max_retries` times with exponential backoff and full jitter, waiting at least `Retry-After`.
A reply that is not JSON or breaks the schema is retried `spec.schema_retries` times. A prompt too
long for the model's context fails that request only. A rejected API key, an unknown model or an
unreachable endpoint raise UserError: every request would fail the same way.

The API key is read from `os.environ[spec.api_key_env]` and lives only in the request headers; it is
never logged and is scrubbed from any server message that echoes it.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import re
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from labpipe.errors import Problem, UserError
from labpipe.generation.client import ChatRequest, ChatResult, ClientStats, ModelSpec
from labpipe.generation.endpoints import EndpointPool, RoutedHTTP, split_endpoints
from labpipe.generation.json_extract import NotJSON, check_schema, extract_json, schema_instruction

log = logging.getLogger(__name__)

POOL_SIZE = 8  # connections per httpx pool; see the module docstring
TRANSIENT = ("rate_limit", "server_error", "timeout", "connection", "bad_response")
_CONTEXT_TOO_LONG = re.compile(
    r"context.length|maximum context|context window|prompt is too long|too many tokens|reduce the length",
    re.I,
)


@dataclass
class _Outcome:
    """What one attempt came to: a result, or a failure of some `kind` with a message."""

    kind: str  # "ok", one of TRANSIENT, "not_json", "schema", "response_format", "context_length", "http"
    message: str = ""
    result: ChatResult | None = None
    retry_after: float | None = None


class OpenAIChatClient:
    """Chat completions against an OpenAI-compatible endpoint; see the module docstring."""

    accepts_follow_ups = True  # on_result may return requests to enqueue (streamed flows)

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        # several comma-separated base URLs: replicas of one model, routed per attempt (endpoints.py)
        self.endpoints = split_endpoints(spec.target) if "," in spec.target else [spec.target.rstrip("/")]
        self.base_url = self.endpoints[0]
        self.pool = (
            EndpointPool(self.endpoints, failures=spec.endpoint_failures, cooldown_s=spec.endpoint_cooldown_s)
            if len(self.endpoints) > 1
            else None
        )
        self.stats = ClientStats()
        self._model = spec.model
        self._response_format = spec.response_format
        self._reachable = False
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
        if self._model is not None:
            return
        try:
            ids = [m["id"] for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            ids = []
        if response.status_code != 200 or not ids:
            raise UserError(
                Problem(
                    where=f"{self.base_url}/models",
                    rule="model",
                    field="model",
                    message=f"no model name given and the endpoint lists none (HTTP {response.status_code})",
                    fix="pass the model name (--teacher-model / --judge-model)",
                )
            )
        self._model = ids[0]

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
            )
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
        connections); their results follow the given requests' in the returned list."""
        requests = list(requests)
        if not requests:
            return []
        self.model_name  # noqa: B018 - probes the endpoint once, before anything is sent
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
        queue = deque(range(len(requests)))
        # with on_result, follow-up requests may come: keep every worker until nothing is outstanding
        wanted = self.spec.concurrency if on_result is not None else len(requests)
        n_workers = max(1, min(self.spec.concurrency, wanted))
        n_pools = -(-n_workers // POOL_SIZE)
        limits = httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE)
        if self.pool is None:
            pools = [httpx.AsyncClient(**self.httpx_options(), limits=limits) for _ in range(n_pools)]
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
                i = queue.popleft()
                result = await self._one(http, requests[i])
                results[i] = result
                if result.ok:
                    self.stats.completed += 1
                else:
                    self.stats.failed += 1
                more = on_result(result) if on_result is not None else None
                more = list(more) if isinstance(more, list | tuple) else []  # anything else: no follow-ups
                for request in more:  # follow-ups go first: an item's next step before new items
                    requests.append(request)
                    results.append(None)
                queue.extendleft(reversed(range(len(requests) - len(more), len(requests))))
                outstanding[0] += len(more)
                outstanding[0] -= 1
                if queue or outstanding[0] == 0:
                    wake.set()

        tasks = [asyncio.create_task(worker(w)) for w in range(n_workers)]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()
        finally:
            await asyncio.gather(*(p.aclose() for p in pools), return_exceptions=True)
        if self.pool is not None:
            log.info("endpoints: %s", self.pool.describe())
        return results

    async def _one(self, http: httpx.AsyncClient, request: ChatRequest) -> ChatResult:
        transient = invalid = attempts = 0
        while True:
            use_response_format = request.schema is not None and self._response_format is not False
            attempts += 1
            outcome = await self._attempt(http, request, use_response_format)
            if outcome.kind == "ok":
                assert outcome.result is not None
                outcome.result.attempts = attempts
                return outcome.result
            self.stats.errors[outcome.kind] += 1
            if outcome.kind == "response_format" and use_response_format:
                if self._response_format is None:
                    log.warning(
                        "%s rejected response_format (%s); putting the schema in the prompt instead",
                        self.base_url,
                        outcome.message,
                    )
                self._response_format = False
                continue
            if outcome.kind in TRANSIENT and transient < self.spec.max_retries:
                delay = self._backoff(transient, outcome.retry_after)
                transient += 1
            elif outcome.kind in ("not_json", "schema") and invalid < self.spec.schema_retries:
                delay = 0.0
                invalid += 1
            else:
                return ChatResult(
                    request.request_id, attempts=attempts, error=f"{outcome.kind}: {outcome.message}"
                )
            self.stats.retries += 1
            log.debug(
                "retrying %s in %.2fs after %s: %s", request.request_id, delay, outcome.kind, outcome.message
            )
            await asyncio.sleep(delay)

    def _backoff(self, retry: int, retry_after: float | None = None) -> float:
        delay = self._rng.uniform(0, min(self.spec.backoff_max_s, self.spec.backoff_base_s * 2**retry))
        return max(delay, retry_after or 0.0)

    def _body(self, request: ChatRequest, use_response_format: bool) -> dict[str, Any]:
        messages = [dict(m) for m in request.messages]
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": messages,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if request.schema is not None and use_response_format:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": request.schema},
            }
        elif request.schema is not None:
            last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
            if last_user is None:
                messages.append({"role": "user", "content": schema_instruction(request.schema)})
            else:
                messages[last_user]["content"] += "\n\n" + schema_instruction(request.schema)
        return body

    async def _attempt(
        self, http: httpx.AsyncClient, request: ChatRequest, use_response_format: bool
    ) -> _Outcome:
        body = self._body(request, use_response_format)
        self.stats.requests += 1
        self.stats.in_flight += 1
        try:
            response = await http.post("/chat/completions", json=body)
        except httpx.TimeoutException:
            return _Outcome("timeout", f"no reply within {self.spec.timeout_s:g}s")
        except httpx.TransportError as exc:
            return _Outcome("connection", self._redact(str(exc) or type(exc).__name__)[:200])
        finally:
            self.stats.in_flight -= 1
        if response.status_code != 200:
            return self._http_failure(response, use_response_format)
        try:
            payload = response.json()
            choice = payload["choices"][0]
            text = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            return _Outcome("bad_response", f"unparseable response body ({len(response.content)} bytes)")
        usage = payload.get("usage") or {}
        result = ChatResult(
            request.request_id,
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
        self.stats.prompt_tokens += result.prompt_tokens
        self.stats.completion_tokens += result.completion_tokens
        if request.schema is not None:
            try:
                result.data = extract_json(text)
            except NotJSON as exc:
                cut = " (cut at max_tokens)" if choice.get("finish_reason") == "length" else ""
                return _Outcome("not_json", f"{exc}{cut}")
            reason = check_schema(result.data, request.schema)
            if reason:
                return _Outcome("schema", reason)
        return _Outcome("ok", result=result)

    def _http_failure(self, response: httpx.Response, use_response_format: bool) -> _Outcome:
        status = response.status_code
        message = f"HTTP {status}: {self._redact(_server_message(response))[:300]}"
        if status in (401, 403):
            raise self._auth_error(response)
        if status == 404 and "model" in message.lower():
            raise UserError(
                Problem(
                    where=self.base_url,
                    rule="model",
                    field="model",
                    message=f"the endpoint does not serve model {self._model!r} ({message})",
                    fix="pass a model name the endpoint lists at GET /v1/models",
                )
            )
        if status == 429:
            return _Outcome("rate_limit", message, retry_after=_retry_after(response))
        if status >= 500 or status == 408:
            return _Outcome("server_error", message, retry_after=_retry_after(response))
        if _CONTEXT_TOO_LONG.search(message):
            return _Outcome("context_length", message)
        if use_response_format and status in (400, 422):
            return _Outcome("response_format", message)
        return _Outcome("http", message)


def _server_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error)
        if error:
            return str(error)
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
