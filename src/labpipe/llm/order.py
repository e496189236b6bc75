"""The order in which a client sends its queued requests: the highest `ChatRequest.priority` first, and
first come, first served among equals.

A streamed flow gives each request the length of the dependency chain it starts (the flow's steps left,
itself included; generation/flow.py `chain_priority`), so that the first step of an item that still has
three steps to go is not queued behind the last step of another: the run ends when its longest chain ends,
and a chain's parent that waits in the queue delays the whole chain.

Two places hold requests back, and both keep this order:
- the client's queue of requests not yet taken by a worker (`RequestQueue`);
- the requests a worker took that wait for room under an endpoint's adaptive limit (`limit.Gate`): the
  worker sets `PRIORITY` for the request it sends (a context variable: each worker is an asyncio task of
  its own), and the gate admits the waiting request with the highest priority when room frees up.
"""

from __future__ import annotations

import heapq
import itertools
from contextvars import ContextVar
from typing import Generic, TypeVar

T = TypeVar("T")

PRIORITY: ContextVar[int] = ContextVar("labpipe_request_priority", default=0)


class RequestQueue(Generic[T]):
    """Requests (their indices, or the gate's waiting futures), popped highest priority first, in the order
    they were pushed among equals."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, T]] = []
        self._seq = itertools.count()

    def push(self, item: T, priority: int = 0) -> None:
        heapq.heappush(self._heap, (-priority, next(self._seq), item))

    def pop(self) -> T:
        return heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)
