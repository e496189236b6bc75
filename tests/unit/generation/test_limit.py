"""The adaptive in-flight limit (generation/limit.py), driven by a fake clock: no wall-clock asserts."""

from __future__ import annotations

import heapq
import math
import random
from statistics import NormalDist

from labpipe.llm.endpoints import EndpointPool
from labpipe.llm.limit import AdaptiveLimit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def serve(limit: AdaptiveLimit, clock: Clock, latency: float, n: int) -> None:
    """n rounds: fill the limit, then every request comes back after `latency`."""
    for _ in range(n):
        tickets = [limit.start() for _ in range(int(limit.limit))]
        clock.now += latency
        for ticket in tickets:
            limit.succeeded(ticket)


def test_starts_small_and_grows_to_the_ceiling_while_latency_holds():
    clock = Clock()
    limit = AdaptiveLimit(64, clock=clock)
    assert limit.limit == 4
    serve(limit, clock, 0.5, 5)  # slow start: +1 per reply, doubling per round
    assert limit.limit == 64 and limit.lowered == 0
    serve(limit, clock, 0.5, 3)
    assert limit.limit == 64  # the ceiling holds


def test_ceiling_below_the_initial_limit():
    assert AdaptiveLimit(2).limit == 2
    assert AdaptiveLimit(0).limit == 1


def test_a_server_that_queues_keeps_about_three_times_its_capacity_in_flight():
    """A server serving 8 at a time, queueing the rest: latency = 1 s per 8 in flight."""
    clock = Clock()
    limit = AdaptiveLimit(64, clock=clock)
    for _ in range(20):
        tickets = [limit.start() for _ in range(int(limit.limit))]
        clock.now += max(1.0, len(tickets) / 8)
        for ticket in tickets:
            limit.succeeded(ticket)
    assert limit.lowered > 0
    # busy (no throughput lost), latency near three times the unloaded (tolerance 3; the baseline creeps
    # up 1% a round)
    assert 8 <= limit.limit <= 4 * 8


def test_timeouts_halve_once_per_round():
    clock = Clock()
    limit = AdaptiveLimit(32, initial=32, clock=clock)
    tickets = [limit.start() for _ in range(32)]
    clock.now += 120
    for ticket in tickets:  # all 32 time out together: one halving, not 32
        limit.congested(ticket, timed_out=True)
    assert limit.limit == 16 and limit.timeouts == 32 and limit.lowered == 1
    assert not limit.slow_start
    ticket = limit.start()  # sent after the halving: its timeout halves again
    limit.congested(ticket, timed_out=True)
    assert limit.limit == 8


def test_after_a_lowering_it_grows_by_one_per_round():
    clock = Clock()
    limit = AdaptiveLimit(32, initial=32, clock=clock)
    limit.congested(limit.start())
    assert limit.limit == 16
    serve(limit, clock, 1.0, 4)
    assert 19 <= limit.limit < 21  # additive: about one per round of replies


def test_the_limit_never_drops_below_one_and_room_follows_it():
    limit = AdaptiveLimit(8, initial=1)
    ticket = limit.start()
    assert not limit.has_room()
    limit.congested(ticket, timed_out=True)
    assert limit.limit == 1 and limit.has_room()


def test_an_idle_limit_does_not_grow():
    """Replies to a trickle of requests (limit mostly unused) say nothing about more room."""
    clock = Clock()
    limit = AdaptiveLimit(64, initial=16, clock=clock)
    for _ in range(50):
        ticket = limit.start()
        clock.now += 1
        limit.succeeded(ticket)
    assert limit.limit == 16


def test_the_baseline_follows_a_lasting_change_slowly():
    """Longer replies later in a run: latency x4 for good; the limit is lowered, then grows back."""
    clock = Clock()
    limit = AdaptiveLimit(16, initial=16, clock=clock)
    serve(limit, clock, 1.0, 5)
    serve(limit, clock, 4.0, 100)
    assert limit.lowered > 0
    serve(limit, clock, 4.0, 60)
    assert limit.limit >= 12


def test_each_replica_has_its_own_limit():
    pool = EndpointPool(["a", "b"], limits=lambda: AdaptiveLimit(4, initial=1))
    a = pool.choose()
    assert a is not None
    pool.start(a)
    a.limit.start()
    b = pool.choose()
    assert b is not None and b.url != a.url
    pool.start(b)
    b.limit.start()
    assert pool.choose() is None  # both full: the attempt waits


def simulated_span(limit: AdaptiveLimit, clock: Clock, latencies: list[float], slots: int) -> float:
    """A server with `slots` slots and a FIFO queue answering `latencies` (one per request, in sending
    order), driven by the client keeping `limit` full: the simulated time the last reply came back."""
    events: list[tuple[float, int]] = []
    queue: list[int] = []
    tickets = {}
    sent = 0
    while sent < len(latencies) or events:
        while sent < len(latencies) and limit.has_room():
            tickets[sent] = limit.start()
            queue.append(sent)
            sent += 1
        while len(events) < slots and queue:
            i = queue.pop(0)
            heapq.heappush(events, (clock.now + latencies[i], i))
        clock.now, i = heapq.heappop(events)
        limit.succeeded(tickets.pop(i))
    return clock.now


def test_a_long_tailed_server_is_not_read_as_overload():
    """Log-normal latency (median 0.5 s, p99 5 s, the distribution of bench_scale_gen.py), 32 slots, 64 the
    ceiling: the adaptive limit keeps the server as busy as a fixed 64 does. The first replies to come back
    are the fastest of those sent; a baseline taken from them read the long tail as overload and held the
    limit near half the slots (45-51% of the endpoint bound on these draws, vs 73-91% for a fixed 64)."""
    sigma = math.log(10) / NormalDist().inv_cdf(0.99)
    for seed in range(4):
        rng = random.Random(seed)
        latencies = [0.5 * math.exp(sigma * rng.gauss(0, 1)) for _ in range(1150)]
        clock = Clock()
        adaptive = simulated_span(AdaptiveLimit(64, clock=clock), clock, latencies, slots=32)
        clock = Clock()
        fixed = simulated_span(AdaptiveLimit(64, initial=64, tolerance=math.inf, clock=clock), clock, latencies, 32)
        assert adaptive <= 1.1 * fixed, (seed, adaptive, fixed)


def test_replies_queued_under_the_old_limit_do_not_lower_the_new_one():
    """After a lowering, the replies still coming back from the old, longer queue say nothing about the
    new limit: only replies to requests sent under it are judged (before, each of them lowered it again)."""
    clock = Clock()
    limit = AdaptiveLimit(32, initial=32, clock=clock)
    serve(limit, clock, 1.0, 2)  # the baseline: 1 s
    old = [limit.start() for _ in range(32)]
    clock.now += 4.0  # the server got slow: a lasting climb
    for ticket in old[:16]:
        limit.succeeded(ticket)
    assert limit.lowered == 1
    new = [limit.start() for _ in range(int(limit.limit) - limit.in_flight)]
    for ticket in old[16:]:  # the rest of the old queue, as slow
        limit.succeeded(ticket)
    clock.now += 1.0  # the lowered limit is served at the unloaded latency again
    for ticket in new:
        limit.succeeded(ticket)
    assert limit.lowered == 1
