"""The sending order (llm/order.py): the client's queue and the adaptive limit's gate both send the highest
priority first, first come first served among equals."""

from __future__ import annotations

import asyncio

import httpx

from labpipe.llm.limit import AdaptiveLimit, Gate
from labpipe.llm.order import PRIORITY, RequestQueue


def test_the_queue_pops_the_highest_priority_first_and_in_order_among_equals():
    queue = RequestQueue()
    for index, priority in enumerate([1, 3, 1, 2, 3, 0]):
        queue.push(index, priority)
    queue.push(6)  # default priority 0
    assert len(queue) == 7
    assert [queue.pop() for _ in range(7)] == [1, 4, 3, 0, 2, 5, 6]
    assert not queue


class HeldHTTP:
    """Stands in for an httpx client: the request named "hold" is answered only when `release` is set."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.release = asyncio.Event()

    async def post(self, path: str, json: str) -> httpx.Response:
        self.sent.append(json)
        if json == "hold":
            await self.release.wait()
        return httpx.Response(200)

    async def aclose(self) -> None:
        pass


def test_the_gate_admits_waiting_requests_by_priority():
    async def scenario() -> list[str]:
        http = HeldHTTP()
        gate = Gate(AdaptiveLimit(1, initial=1), [http])  # one in flight at a time

        async def post(name: str, priority: int) -> None:
            PRIORITY.set(priority)  # as the client's worker does, per task
            await gate.post("/chat/completions", json=name)

        tasks = [asyncio.create_task(post("hold", 0))]
        await asyncio.sleep(0)
        for name, priority in [("low", 1), ("high", 3), ("low again", 1), ("middle", 2), ("gone", 5)]:
            tasks.append(asyncio.create_task(post(name, priority)))
        await asyncio.sleep(0)
        tasks[-1].cancel()  # a waiting request that is cancelled takes no room
        await asyncio.sleep(0)
        assert http.sent == ["hold"] and len(gate.waiting) == 5
        http.release.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert gate.limit.in_flight == 0
        return http.sent

    assert asyncio.run(scenario()) == ["hold", "high", "middle", "low", "low again"]
