"""Several OpenAI-compatible endpoints serving one model (replicas): a pool, and a router over it.

`--teacher http://a:8000/v1,http://b:8000/v1` (or TEACHER_ENDPOINT with commas) names replicas of one
model. The OpenAI client sends every attempt of every request through `RoutedHTTP.post`, which picks
the endpoint in rotation with the fewest requests in flight (ties: the one that was sent the fewest);
an endpoint whose last attempt failed comes after those whose last attempt succeeded (a refused
connection fails fast, and would otherwise look like the least busy replica), except for the one
trial attempt an endpoint gets when its cooldown is over.

An endpoint whose attempts fail `failures` times in a row (connection refused or dropped, timeout,
HTTP 5xx) leaves the rotation for `cooldown_s`; the cooldown doubles each time it fails again right
after coming back (up to `max_cooldown_s`) and resets on its first success. When it is due, the next
attempt goes to it again (one failure then takes it out again). When every endpoint is out of
rotation, the one due back first is tried: the run slows down, it never stops.

Routing is per attempt, below the client's retry loop: a failed attempt is retried (on another
endpoint) by the same retry logic as with one endpoint, and every request still yields exactly one
result, so nothing is lost or sent for twice into the output.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from labpipe.errors import Problem, UserError
from labpipe.llm.limit import AdaptiveLimit, limited_post


def split_endpoints(target: str) -> list[str]:
    """The base URLs of a comma-separated target (one URL: a list of one); each must be http(s)."""
    urls = [u.strip().rstrip("/") for u in target.split(",") if u.strip()]
    bad = [u for u in urls if not u.startswith(("http://", "https://"))]
    if bad or not urls:
        raise UserError(
            Problem(
                target,
                "endpoints",
                f"not an endpoint list: {', '.join(bad) or 'empty'}",
                "give one or more OpenAI-compatible base URLs separated by commas (http(s)://host/v1,...)",
            )
        )
    if len(set(urls)) != len(urls):
        raise UserError(Problem(target, "endpoints", "an endpoint is listed twice", "list each replica once"))
    return urls


@dataclass
class Endpoint:
    url: str
    in_flight: int = 0
    sent: int = 0  # attempts sent to it
    ok: int = 0
    failed: int = 0
    streak: int = 0  # failed attempts in a row
    down_until: float = 0.0  # out of rotation until this time.monotonic()
    times_down: int = 0  # taken out of rotation (consecutively, for the cooldown's doubling)
    outages: int = 0  # taken out of rotation (in total)
    returns: int = 0  # attempts sent to it when it came back after a cooldown
    limit: AdaptiveLimit | None = None  # its own in-flight limit (limit.py); None: only the client's workers

    def describe(self) -> dict[str, Any]:
        described = {k: getattr(self, k) for k in ("url", "sent", "ok", "failed", "outages", "returns")}
        return described | ({"concurrency": self.limit.describe()} if self.limit is not None else {})

    def has_room(self) -> bool:
        return self.limit is None or self.limit.has_room()


class EndpointPool:
    """Which endpoint gets the next attempt, and which are out of rotation; see the module docstring.

    Used from one asyncio loop (no locks needed); `clock` is replaceable for tests.
    """

    def __init__(
        self,
        urls: list[str],
        *,
        failures: int = 3,
        cooldown_s: float = 5.0,
        max_cooldown_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        limits: Callable[[], AdaptiveLimit] | None = None,  # one adaptive limit per endpoint
    ):
        self.endpoints = [Endpoint(u, limit=limits() if limits else None) for u in urls]
        self.failures, self.cooldown_s, self.max_cooldown_s = max(1, failures), cooldown_s, max_cooldown_s
        self.clock = clock

    def choose(self) -> Endpoint | None:
        """The endpoint for the next attempt; None when those in rotation have no room under their limit."""
        now = self.clock()
        up = [e for e in self.endpoints if e.down_until <= now]
        if not up:  # all out: the one due back first
            up = [min(self.endpoints, key=lambda e: e.down_until)]
        up = [e for e in up if e.has_room()]
        return min(up, key=lambda e: (self._rank(e), e.in_flight, e.sent)) if up else None

    def _rank(self, e: Endpoint) -> int:
        if e.streak >= self.failures and e.in_flight == 0:
            return 0  # due back after its cooldown: one trial attempt, first
        return 1 if e.streak == 0 else 2

    def start(self, endpoint: Endpoint) -> None:
        if endpoint.times_down and endpoint.streak >= self.failures:
            endpoint.returns += 1  # the first attempt after a cooldown
        endpoint.in_flight += 1
        endpoint.sent += 1

    def succeeded(self, endpoint: Endpoint) -> None:
        endpoint.in_flight -= 1
        endpoint.ok += 1
        endpoint.streak = endpoint.times_down = 0
        endpoint.down_until = 0.0

    def failed(self, endpoint: Endpoint) -> None:
        endpoint.in_flight -= 1
        endpoint.failed += 1
        endpoint.streak += 1
        now = self.clock()
        if endpoint.streak >= self.failures and endpoint.down_until <= now:
            cooldown = min(self.max_cooldown_s, self.cooldown_s * 2**endpoint.times_down)
            endpoint.down_until = now + cooldown
            endpoint.times_down += 1
            endpoint.outages += 1

    def take_out(self, url: str) -> None:
        """Out of rotation now (e.g. unreachable when the client first probed the replicas)."""
        for endpoint in self.endpoints:
            if endpoint.url == url:
                endpoint.streak = max(endpoint.streak, self.failures - 1)
                endpoint.in_flight += 1
                self.failed(endpoint)

    def describe(self) -> list[dict[str, Any]]:
        return [e.describe() for e in self.endpoints]


def failed_response(response: httpx.Response) -> bool:
    """An HTTP answer that counts against the endpoint (the replica is sick, not the request)."""
    return response.status_code >= 500 or response.status_code == 408


class RoutedHTTP:
    """Stands in for an `httpx.AsyncClient` in the OpenAI client's attempts: `post` goes to the pool's choice.

    `clients[url]` holds a few httpx clients per endpoint (connections are kept for the whole
    `complete()` call); an endpoint's attempts rotate over its clients.
    """

    def __init__(self, pool: EndpointPool, clients: dict[str, list[httpx.AsyncClient]]):
        self.pool, self.clients = pool, clients
        self.room = asyncio.Condition()

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        async with self.room:  # wait for room under a replica's limit (a cooldown's end wakes no one: poll)
            while (endpoint := self.pool.choose()) is None:
                try:
                    await asyncio.wait_for(self.room.wait(), 0.5)
                except TimeoutError:
                    pass
            ticket = endpoint.limit.start() if endpoint.limit is not None else None
        clients = self.clients[endpoint.url]
        http = clients[endpoint.sent % len(clients)]
        self.pool.start(endpoint)
        try:
            if endpoint.limit is not None and ticket is not None:
                response = await limited_post(endpoint.limit, ticket, http, path, **kwargs)
            else:
                response = await http.post(path, **kwargs)
        except httpx.TransportError:  # refused, dropped, timed out
            self.pool.failed(endpoint)
            raise
        except BaseException:  # cancelled: says nothing about the endpoint
            endpoint.in_flight -= 1
            raise
        finally:
            async with self.room:
                self.room.notify_all()
        if failed_response(response):
            self.pool.failed(endpoint)
        else:
            self.pool.succeeded(endpoint)
        return response

    async def aclose(self) -> None:
        for clients in self.clients.values():
            for http in clients:
                await http.aclose()
