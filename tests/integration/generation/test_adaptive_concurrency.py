"""Adaptive concurrency (generation/limit.py) against an overloaded server, over real HTTP.

The server is our fake OpenAI server (tests.support.fake_openai) on purpose: the point is our
client's behaviour under overload, which needs a server whose capacity we set. It serves `slots`
requests at a time and queues the rest, so latency grows with the load; like `transformers serve`,
it keeps computing a request whose client gave up (it does not abort on disconnect). Counts are
asserted, never times.
"""

from __future__ import annotations

from labpipe.llm.client import make_client
from labpipe.llm.types import ModelSpec
from tests.support.chat import chat
from tests.support.fake_openai import FakeOpenAIServer

N = 64


def run(adaptive: bool) -> tuple[FakeOpenAIServer, object, list]:
    # 2 at a time, 0.1 s each: 32 in flight wait up to 1.6 s, beyond the client's 1 s timeout
    with FakeOpenAIServer(latency_s=0.1, slots=2) as server:
        spec = ModelSpec(
            server.base_url,
            model=server.model,
            concurrency=32,
            timeout_s=1.0,
            max_retries=6,
            backoff_base_s=0.05,
            backoff_max_s=0.2,
            adaptive_concurrency=adaptive,
        )
        client = make_client(spec)
        results = client.complete([chat(i) for i in range(N)])
    return server, client, results


def test_adaptive_limit_avoids_the_timeouts_and_resends_of_a_fixed_limit():
    fixed_server, fixed, fixed_results = run(adaptive=False)
    server, client, results = run(adaptive=True)

    # the fixed limit overloads the server: timeouts, re-sends onto a server still computing the abandoned
    assert fixed.stats.errors["timeout"] >= 32
    assert fixed_server.total_requests > 1.5 * N
    # the adaptive one: every request answered, few timeouts, amplification (sent / completed) <= 1.2
    assert all(r.ok for r in results)
    assert client.stats.errors["timeout"] <= fixed.stats.errors["timeout"] / 4
    assert server.total_requests <= 1.2 * N
    assert server.total_requests < fixed_server.total_requests
    assert client.stats.completed == N
    # ... while keeping the server busy: more than its 2 slots in flight at times, never the ceiling
    assert 2 < server.max_in_flight < 32
    # the limit is what bounds the server's load: its peak is what the server saw, give or take the one request
    # in transit when either side counted (a loaded 2-core machine shifts the two counts by one: seen 16 vs 17)
    assert client.limit is not None and abs(client.limit.describe()["peak"] - server.max_in_flight) <= 1


def test_fixed_limit_keeps_exactly_the_configured_concurrency():
    with FakeOpenAIServer(latency_s=0.05) as server:
        spec = ModelSpec(server.base_url, model=server.model, concurrency=5, adaptive_concurrency=False)
        client = make_client(spec)
        assert all(r.ok for r in client.complete([chat(i) for i in range(40)]))
    assert server.max_in_flight == 5 and client.limit is None


def test_replicas_each_get_their_own_limit():
    """Two replicas, one small (2 slots) and one large (16 slots): each limit settles to its own server."""
    with (
        FakeOpenAIServer(latency_s=0.1, slots=2) as small,
        FakeOpenAIServer(latency_s=0.1, slots=16) as large,
    ):
        spec = ModelSpec(
            f"{small.base_url},{large.base_url}",
            model=small.model,
            concurrency=32,
            timeout_s=0.6,
            backoff_base_s=0.05,
            backoff_max_s=0.2,
        )
        client = make_client(spec)
        results = client.complete([chat(i) for i in range(160)])
    assert all(r.ok for r in results)
    assert client.pool is not None
    small_limit, large_limit = (e.limit for e in client.pool.endpoints)
    assert small_limit is not None and large_limit is not None
    assert large.status_counts[200] > small.status_counts[200]
    assert large_limit.peak > small_limit.peak
    assert small.total_requests + large.total_requests <= 1.2 * 160
