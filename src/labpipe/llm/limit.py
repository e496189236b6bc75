"""How many requests one endpoint gets at once: an adaptive limit (AIMD with a latency signal).

`spec.concurrency` is the ceiling, not the number in flight. Each endpoint (each replica of a list)
has its own `AdaptiveLimit`:

- it starts at `initial` (4) and grows by one per reply while the limit was in use ("slow start"),
  until the first sign of overload; after that by 1/limit per reply (one per round of replies); a
  reply slower than the threshold below makes it not grow;
- the latency without load (the baseline) is the geometric mean of the replies to the first `initial`
  requests, sent with at most `initial` in flight, *all* of them: the first replies to come back are the
  fastest of those sent, and a baseline taken from them reads a long tail as overload (on a log-normal
  server with p99 10x the median it held the limit at half the server's slots). The latency brake waits
  for the last of them;
- a timeout, a 429 or a 503/529 halves it; a smoothed latency (the geometric mean over ~10 replies, of
  requests sent since the last lowering) more than `tolerance` (3) times the baseline lowers it. Single
  slow replies do not: a long-tailed server would otherwise be held far below its capacity. A server
  that serves N at a time and queues the rest answers in about 3x its unloaded latency at 3N in flight:
  it is kept busy (a long-tailed one needs that queue), and the requests it queues do not time out. The
  lowering is in proportion (limit x threshold / smoothed latency, at most halving), so it lands near 3N
  in one step;
- a lowering counts once per round: only a request sent after the last lowering can lower it again, and
  only its replies are judged (32 requests that time out together halve it once, not 32 times; replies
  that queued under the old limit do not lower the new one);
- the baseline is re-measured by a request that was alone in flight (the limit fell to one, or a
  trickle), so that replies that got longer for good are not read as overload forever; else it rises by
  1% per round of replies. Under a lasting overload the latency brake thus holds for many rounds, and
  timeouts (halving) are the backstop.

A timed-out request is not re-sent at once: httpx closes the connection of a request that timed out
(httpcore closes a connection whose response was not read to the end), which makes vLLM abort it, and
the retry waits for room under the lowered limit, i.e. until the requests in flight have come back.

Used from one asyncio loop; `clock` is replaceable for tests. `Gate` wraps an httpx client with one limit.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from labpipe.llm.order import PRIORITY, RequestQueue

CONGESTED_STATUS = (429, 503, 529)


@dataclass
class Ticket:
    """One request in flight: when it was sent, and in which round (see the module docstring)."""

    started: float
    epoch: int
    busy: bool  # the limit was in use when it was sent (or when it came back: only then may it grow)
    alone: bool  # nothing else was in flight when it was sent
    light: bool = False  # one of the first `initial` requests: its latency is part of the baseline


class AdaptiveLimit:
    def __init__(
        self,
        ceiling: int,
        *,
        initial: int = 4,
        tolerance: float = 3.0,
        smoothing: float = 0.1,
        warmup: int = 10,
        drift: float = 0.01,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.ceiling = max(1, ceiling)
        self.limit = float(min(self.ceiling, max(1, initial)))
        self.tolerance, self.smoothing, self.drift, self.warmup = tolerance, smoothing, drift, warmup
        self.fresh = 0  # replies judged since the last lowering
        self.clock = clock
        self.in_flight = 0
        self.epoch = 0  # lowerings so far
        self.slow_start = True
        self.smoothed: float | None = None  # latency, exponentially smoothed (geometric, see _smooth)
        self._log: float | None = None
        self.baseline: float | None = None  # the latency without load, once measured
        self._light_unsent = int(self.limit)  # the baseline's requests not sent yet
        self._light_out = 0  # ... sent, not back yet
        self._light_logs: list[float] = []  # ... back: their log latencies
        self.timeouts = self.lowered = self.peak = 0

    def has_room(self) -> bool:
        return self.in_flight < int(self.limit)

    def start(self) -> Ticket:
        busy = self.in_flight + 1 >= self.limit / 2
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        light = self._light_unsent > 0
        if light:
            self._light_unsent -= 1
            self._light_out += 1
        return Ticket(self.clock(), self.epoch, busy, alone=self.in_flight == 1, light=light)

    def succeeded(self, ticket: Ticket) -> None:
        """A reply came back (any status but the congested ones): its latency is a sample."""
        busy = ticket.busy or self.in_flight >= self.limit / 2
        alone = ticket.alone and self.in_flight == 1
        latency = self.clock() - ticket.started
        if ticket.light:
            self._light_logs.append(math.log(max(latency, 1e-6)))
        self._back(ticket)
        if ticket.epoch == self.epoch:  # sent under the limit now in force
            self._smooth(latency)
        if self.baseline is not None and not ticket.light:
            if alone:  # latency without load, whatever it was before (replies got longer, or shorter)
                self.baseline = (self.baseline + latency) / 2
            else:
                self.baseline *= 1 + self.drift / self.limit
        threshold = math.inf if self.baseline is None else self.tolerance * self.baseline
        if self.fresh > self.warmup and self.smoothed > threshold:  # a lasting climb, not one slow reply
            self._lower(ticket, max(0.5, threshold / self.smoothed))
        elif busy and self.limit < self.ceiling and latency <= threshold:  # a slow reply: no growth
            self.limit = min(self.ceiling, self.limit + (1 if self.slow_start else 1 / self.limit))

    def _smooth(self, latency: float) -> None:
        """An exponential average of the log latency over ~10 replies (a geometric mean: a median, not
        pulled by a long tail)."""
        x = math.log(max(latency, 1e-6))
        self._log = x if self._log is None else (1 - self.smoothing) * self._log + self.smoothing * x
        self.smoothed = math.exp(self._log)
        self.fresh += 1

    def congested(self, ticket: Ticket, timed_out: bool = False) -> None:
        """A timeout, or the server said it is overloaded (429, 503, 529)."""
        self._back(ticket)
        self.timeouts += timed_out
        self._lower(ticket, 0.5)

    def ended(self, ticket: Ticket) -> None:
        """A request that says nothing about load (refused, dropped, cancelled)."""
        self._back(ticket)

    def _back(self, ticket: Ticket) -> None:
        self.in_flight -= 1
        self._light_out -= ticket.light
        if ticket.light and not self._light_out and not self._light_unsent:  # the last of the baseline's
            if self._light_logs:
                self.baseline = math.exp(sum(self._light_logs) / len(self._light_logs))
            else:  # none of them was answered: measure with the next request
                self._light_unsent = 1

    def _lower(self, ticket: Ticket, factor: float) -> None:
        if ticket.epoch != self.epoch:
            return  # sent before the last lowering: that one already answered for it
        self.limit = max(1.0, self.limit * factor)
        self.epoch += 1
        self.lowered += 1
        self.slow_start = False
        self._log, self.fresh = None, 0  # judge the new limit on its own replies

    def describe(self) -> dict[str, Any]:
        return {
            "limit": int(self.limit),
            "peak": self.peak,
            "lowered": self.lowered,
            "timeouts": self.timeouts,
        }


async def limited_post(
    limit: AdaptiveLimit, ticket: Ticket, http: httpx.AsyncClient, path: str, **kwargs: Any
) -> httpx.Response:
    """`http.post` with `limit` told how it went (the ticket was taken by the caller)."""
    try:
        response = await http.post(path, **kwargs)
    except httpx.TimeoutException:
        limit.congested(ticket, timed_out=True)
        raise
    except BaseException:
        limit.ended(ticket)
        raise
    if response.status_code in CONGESTED_STATUS:
        limit.congested(ticket)
    else:
        limit.succeeded(ticket)
    return response


class Gate:
    """Stands in for an `httpx.AsyncClient`: `post` waits for room under one endpoint's limit.

    Requests that wait are admitted highest `order.PRIORITY` first (first come, first served among
    equals), as room frees up (a reply came back, or the limit grew)."""

    def __init__(self, limit: AdaptiveLimit, clients: list[httpx.AsyncClient]):
        self.limit, self.clients = limit, clients
        self.waiting: RequestQueue[asyncio.Future[Ticket]] = RequestQueue()
        self.busy = [0] * len(clients)  # requests in flight per client (each holds POOL_SIZE connections)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        ticket = await self._admit()
        i = min(range(len(self.clients)), key=self.busy.__getitem__)
        self.busy[i] += 1
        try:
            return await limited_post(self.limit, ticket, self.clients[i], path, **kwargs)
        finally:
            self.busy[i] -= 1
            self._wake()

    async def _admit(self) -> Ticket:
        if not self.waiting and self.limit.has_room():
            return self.limit.start()
        future: asyncio.Future[Ticket] = asyncio.get_running_loop().create_future()
        self.waiting.push(future, PRIORITY.get())
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # admitted, then cancelled: give the room back
                self.limit.ended(future.result())
                self._wake()
            raise

    def _wake(self) -> None:
        """Admit the waiting requests, best first, while there is room (a cancelled one is skipped)."""
        while self.waiting and self.limit.has_room():
            future = self.waiting.pop()
            if not future.done():
                future.set_result(self.limit.start())

    async def aclose(self) -> None:
        for http in self.clients:
            await http.aclose()
