"""Transport for the OpenAI-compatible client: connections, replicas, the adaptive limit, HTTP attempts.

`run()` is synchronous: it runs an asyncio loop with `spec.concurrency` workers, each sending one request
at a time; each attempt waits for room under its endpoint's adaptive limit (limit.py: lowered when
latency climbs or requests time out, raised while the server keeps up, `spec.concurrency` the ceiling;
`spec.adaptive_concurrency=False` keeps exactly `spec.concurrency` in flight). Workers share a few small
httpx connection pools rather than one big one, because httpcore's pool bookkeeping grows with the square
of its size and would eat the CPU at 64 connections. Several comma-separated base URLs are replicas of
one model, routed per attempt (endpoints.py). `on_result` runs on the loop's thread, one call at a time,
as each request finishes: it may append to a checkpoint file without locks, and the requests it returns
are sent in the same run. Queued requests go out highest `ChatRequest.priority` first, first come first
served among equals (order.py), and the adaptive limit's gate admits waiting ones in the same order. The
structured-output probe, when due, runs in the same loop (structured.LoopProbe).

The API key is read from `os.environ[spec.api_key_env]` and lives only in the request headers; it is
never logged and is scrubbed (`redact`) from any server message that echoes it. Failures that make every
request fail (unreachable, a rejected key, an unknown model) raise UserError.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from labpipe.errors import Problem, UserError
from labpipe.llm.dialects import Outcome, read_failure
from labpipe.llm.endpoints import EndpointPool, RoutedHTTP, split_endpoints
from labpipe.llm.limit import AdaptiveLimit, Gate
from labpipe.llm.order import PRIORITY, RequestQueue
from labpipe.llm.structured import LoopProbe
from labpipe.llm.types import ChatRequest, ChatResult, ClientStats, ModelSpec

log = logging.getLogger(__name__)

POOL_SIZE = 8  # connections per httpx pool; see the module docstring


def quiet_http_logs() -> None:
    """httpx logs one INFO line per request and httpcore traces every connection step at DEBUG: in a task's
    log (or with `-v`) they bury the progress lines. They show only with LABPIPE_HTTP_DEBUG=1."""
    if os.environ.get("LABPIPE_HTTP_DEBUG") != "1":
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)


class Transport:
    """The endpoints of one ModelSpec: their connections, limits and failures; see the module docstring."""

    def __init__(self, spec: ModelSpec, stats: ClientStats):
        quiet_http_logs()
        self.spec, self.stats = spec, stats
        self.endpoints = split_endpoints(spec.target) if "," in spec.target else [spec.target.rstrip("/")]
        self.base_url = self.endpoints[0]  # the endpoint probed (GET /models, structured output)
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
        self._ssl_context: ssl.SSLContext | None = None
        self._rng = random.Random()
        key = os.environ.get(spec.api_key_env, "")
        self._key_set = bool(key)
        self._headers = httpx.Headers({"Authorization": f"Bearer {key}"} if key else {})
        self.redact = (lambda text: text.replace(key, "***")) if len(key) >= 4 else (lambda text: text)

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

    def backoff(self, retry: int, retry_after: float | None = None) -> float:
        """Retry n waits uniform(0, min(backoff_max_s, backoff_base_s * 2**n)) ("full jitter"), at least
        what the server's Retry-After asked."""
        delay = self._rng.uniform(0, min(self.spec.backoff_max_s, self.spec.backoff_base_s * 2**retry))
        return max(delay, retry_after or 0.0)

    # failures that every request would share ------------------------------------------------------

    def failure(self, response: httpx.Response, had_response_format: bool, model: str | None) -> Outcome:
        """A non-200 reply as an Outcome (dialects.read_failure); raises for a rejected key or a model
        the endpoint does not serve."""
        outcome = read_failure(response, had_response_format, self.redact)
        if outcome.kind == "api_key":
            raise self.auth_error(response)
        if outcome.kind == "model":
            raise UserError(
                Problem(
                    where=self.base_url,
                    rule="model",
                    field="model",
                    message=f"the endpoint does not serve model {model!r} ({outcome.message})",
                    fix="pass a model name the endpoint serves (GET /v1/models; for `transformers serve`, "
                    "the model path it was started with)",
                )
            )
        return outcome

    def unreachable(self, reason: str) -> UserError:
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

    def auth_error(self, response: httpx.Response) -> UserError:
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

    # attempts -------------------------------------------------------------------------------------

    def get_models(self) -> httpx.Response:
        """GET /models of `base_url`, retried while it cannot connect; raises `unreachable` after that
        (at once for an untrusted certificate)."""
        attempt = 0
        with httpx.Client(**self.httpx_options()) as http:
            while True:
                try:
                    response = http.get("/models")
                    break
                except httpx.TransportError as exc:
                    reason = self.redact(str(exc) or type(exc).__name__)
                    if "CERTIFICATE_VERIFY_FAILED" in reason or attempt >= self.spec.max_retries:
                        raise self.unreachable(reason) from None
                    time.sleep(self.backoff(attempt))
                    attempt += 1
        return response

    async def post(self, http: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response | Outcome:
        """One chat completion attempt: the server's response, or the Outcome of a timeout or a dropped
        connection. Counted in stats (requests, in_flight)."""
        self.stats.requests += 1
        self.stats.in_flight += 1
        try:
            return await http.post("/chat/completions", json=body)
        except httpx.TimeoutException:
            return Outcome("timeout", f"no reply within {self.spec.timeout_s:g}s")
        except httpx.TransportError as exc:
            return Outcome("connection", self.redact(str(exc) or type(exc).__name__)[:300])
        finally:
            self.stats.in_flight -= 1

    # the worker pool ------------------------------------------------------------------------------

    def run(
        self,
        requests: list[ChatRequest],
        one: Callable[[httpx.AsyncClient, ChatRequest], Awaitable[ChatResult]],
        on_result: Callable[[ChatResult], Sequence[ChatRequest] | None] | None,
        probe: LoopProbe | None = None,
    ) -> list:
        """`one(http, request)` for every request (and every follow-up `on_result` returns); results in
        request order, follow-ups after the given requests. `probe` runs in the loop beside them."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._run(requests, one, on_result, probe))
        # Called from inside an event loop (a notebook): run ours on a thread of its own.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, self._run(requests, one, on_result, probe)).result()

    def _pools(self, n_workers: int) -> list:
        n_pools = -(-n_workers // POOL_SIZE)
        limits = httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE)
        if self.pool is None:
            pools = [httpx.AsyncClient(**self.httpx_options(), limits=limits) for _ in range(n_pools)]
            return [Gate(self.limit, pools)] if self.limit is not None else pools
        clients = {
            url: [
                httpx.AsyncClient(**{**self.httpx_options(), "base_url": url}, limits=limits)
                for _ in range(n_pools)
            ]
            for url in self.endpoints
        }
        return [RoutedHTTP(self.pool, clients)]

    async def _run(
        self,
        requests: list[ChatRequest],
        one: Callable[[httpx.AsyncClient, ChatRequest], Awaitable[ChatResult]],
        on_result: Callable[[ChatResult], Sequence[ChatRequest] | None] | None,
        probe: LoopProbe | None,
    ):
        results: list[ChatResult | None] = [None] * len(requests)
        queue = RequestQueue()  # highest priority first (order.py)
        for i, request in enumerate(requests):
            queue.push(i, request.priority)
        # with on_result, follow-up requests may come: keep every worker until nothing is outstanding
        wanted = self.spec.concurrency if on_result is not None else len(requests)
        n_workers = max(1, min(self.spec.concurrency, wanted))
        pools = self._pools(n_workers)
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
                result = await one(http, requests[i])
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

        if probe is not None:
            probe.start()
        tasks = [asyncio.create_task(worker(w)) for w in range(n_workers)]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()
            if probe is not None:
                await probe.end()
        finally:
            if probe is not None:
                await probe.end(cancel=True)
            await asyncio.gather(*(p.aclose() for p in pools), return_exceptions=True)
        if self.pool is not None:
            log.info("endpoints: %s", self.pool.describe())
        elif self.limit is not None:
            log.info("%s: concurrency %s", self.base_url, self.limit.describe())
        return results
