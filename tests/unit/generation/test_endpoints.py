"""The endpoint pool's choices (fewest in flight, out of rotation after repeated failures, back after a
cooldown) with a controlled clock; the HTTP side is in tests/integration/generation/test_scale_gen.py."""

from __future__ import annotations

import pytest

from labpipe.errors import UserError
from labpipe.llm.endpoints import EndpointPool, split_endpoints


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_split_endpoints():
    assert split_endpoints(" http://a/v1/ , https://b/v1") == ["http://a/v1", "https://b/v1"]
    with pytest.raises(UserError):
        split_endpoints("http://a/v1,/models/local")


def test_fewest_in_flight_then_fewest_sent():
    pool = EndpointPool(["a", "b", "c"])
    chosen = []
    for _ in range(3):
        e = pool.choose()
        pool.start(e)
        chosen.append(e.url)
    assert chosen == ["a", "b", "c"]
    pool.succeeded(pool.endpoints[1])  # b is free again
    assert pool.choose().url == "b"


def test_repeated_failures_take_an_endpoint_out_and_it_comes_back_after_the_cooldown():
    clock = Clock()
    pool = EndpointPool(["a", "b"], failures=2, cooldown_s=5, clock=clock)
    a, b = pool.endpoints
    for _ in range(2):
        pool.start(a)
        pool.failed(a)
    assert a.outages == 1
    assert all(pool.choose() is b for _ in range(5))  # out of rotation, whatever its load
    clock.now += 5.1
    pool.start(b)  # b busy, a due back: a gets the next attempt
    assert pool.choose() is a
    pool.start(a)
    assert a.returns == 1
    pool.failed(a)  # fails again right away: out again, for twice as long
    assert a.outages == 2
    clock.now += 9.9
    assert pool.choose() is b
    clock.now += 0.2
    assert pool.choose() is a
    pool.start(a)
    pool.succeeded(a)
    assert a.streak == a.times_down == 0 and a.returns == 2


def test_all_out_of_rotation_tries_the_one_due_first():
    clock = Clock()
    pool = EndpointPool(["a", "b"], failures=1, cooldown_s=5, clock=clock)
    a, b = pool.endpoints
    pool.start(b)
    pool.failed(b)
    clock.now += 1
    pool.start(a)
    pool.failed(a)
    assert pool.choose() is b
