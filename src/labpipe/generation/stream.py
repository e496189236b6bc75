"""Streamed generation: every item moves through its flow's generate steps on its own, its next request
sent as soon as its previous reply is in, all in one client run (connections kept across steps), so a
slow reply holds up only its own item. Each request carries the length of the chain it starts
(flow.chain_priority), and the client sends the longest chains first (llm/order.py).

`Stream` only fills `replies`; the stage (stage.py) then assembles the records step by step from them,
so the output is byte-identical to the step-by-step run.
"""

from __future__ import annotations

from typing import Any

from labpipe.generation.flow import apply, plan
from labpipe.llm.cache import model_identity
from labpipe.llm.types import ChatRequest, ChatResult


class Stream:
    """Every item through its flow's generate steps, each next request sent as its previous reply arrives.

    Fills `replies` (request id -> result) with every request the step-by-step run would need; the
    records are then assembled from them by `_run_depth`. Checkpoint lookups and records are the same
    as `complete()`'s (`Checkpoint.get` / `Checkpoint.record`); an identical request is sent once.
    A client that cannot take follow-up requests (`accepts_follow_ups`) is driven in waves.
    """

    def __init__(self, states, client, checkpoint, stats, progress, config, replies):
        self.states, self.client, self.checkpoint = states, client, checkpoint
        self.stats, self.progress, self.config, self.replies = stats, progress, config, replies
        self.waiting: dict[str, list[tuple[str, int, dict[str, Any], ChatRequest]]] = {}
        self.leaf_of: dict[str, str] = {}
        self.planned: set[tuple[str, int, str]] = set()
        self.model = model_identity(client) if checkpoint.cache is not None else ""

    def run(self) -> None:
        pending = [r for leaf, s in self.states.items() for r in self.expand([(leaf, 0, i) for i in s.items])]
        streaming = getattr(self.client, "accepts_follow_ups", False)
        while pending:
            later: list[ChatRequest] = []

            def on_result(result: ChatResult, later=later) -> list[ChatRequest] | None:
                more = self.on_result(result)
                if streaming:
                    return more
                later.extend(more)
                return None

            for result in self.client.complete(pending, on_result=on_result):
                if result.request_id not in self.replies:  # a client that skipped on_result for it
                    later.extend(self.on_result(result))
            pending = later  # streaming: empty unless the client skipped on_result

    def expand(self, nodes: list[tuple[str, int, dict[str, Any]]]) -> list[ChatRequest]:
        """Plan the next step of each (leaf, depth, item); returns the requests to send."""
        to_send: list[ChatRequest] = []
        per_leaf: dict[str, int] = {}
        stack = list(reversed(nodes))
        while stack:
            unresolved = self._walk(stack, per_leaf)
            if unresolved:  # one batched lookup in the shared cache for the requests met in this round
                self.checkpoint.lookup(unresolved, self.model)
            for leaf, request in unresolved:
                rid = request.request_id
                hit = self.checkpoint.get(rid)
                if hit is None:
                    self.leaf_of[rid] = leaf
                    to_send.append(request)
                else:
                    self._reuse(rid, leaf, hit, stack)
        self.stats.sent += len(to_send)
        if per_leaf:
            self.progress.expect(per_leaf, len(to_send))
        return to_send

    def _reuse(self, rid: str, leaf: str, hit: ChatResult, stack: list) -> None:
        """A reply already paid for (checkpoint or shared cache): its waiting items move on."""
        self.stats.cached += 1
        self.stats.cache_hits += 1 if self.checkpoint.from_cache(rid) else 0
        self.progress.result(leaf, hit, True)
        self.replies[rid] = hit
        for w_leaf, w_depth, w_item, w_req in self.waiting.pop(rid):
            children = self.children(w_leaf, w_depth, w_item, w_req)
            stack.extend((w_leaf, w_depth + 1, c) for c in reversed(children))

    def _walk(self, stack: list, per_leaf: dict[str, int]) -> list[tuple[str, ChatRequest]]:
        """Plan down the stack; returns the first-seen requests with no checkpointed reply."""
        unresolved: list[tuple[str, ChatRequest]] = []
        while stack:
            leaf, depth, item = stack.pop()
            flow = self.states[leaf].flow
            steps = flow.generate_steps
            if depth >= len(steps) or (leaf, depth, item["id"]) in self.planned:
                continue
            self.planned.add((leaf, depth, item["id"]))
            for it, request in plan(
                flow, steps[depth], [item], seed=self.config.seed, fan_out_scale=self.config.fan_out_scale
            ):
                rid = request.request_id
                per_leaf[leaf] = per_leaf.get(leaf, 0) + 1
                if rid in self.replies:
                    stack.extend(
                        (leaf, depth + 1, c) for c in reversed(self.children(leaf, depth, it, request))
                    )
                    continue
                first = rid not in self.waiting
                self.waiting.setdefault(rid, []).append((leaf, depth, it, request))
                if not first:
                    continue
                hit = self.checkpoint.get(rid)
                if hit is None:
                    unresolved.append((leaf, request))
                else:
                    self._reuse(rid, leaf, hit, stack)
        return unresolved

    def children(
        self, leaf: str, depth: int, item: dict[str, Any], request: ChatRequest
    ) -> list[dict[str, Any]]:
        step = self.states[leaf].flow.generate_steps[depth]
        return apply(step, [(item, request)], self.replies, gate=self.config.gate).items

    def on_result(self, result: ChatResult) -> list[ChatRequest]:
        rid = result.request_id
        leaf = self.leaf_of.get(rid, "")
        self.checkpoint.record(leaf, result)
        self.replies[rid] = result
        self.stats.retries += max(0, result.attempts - 1)
        self.stats.prompt_tokens += result.prompt_tokens
        self.stats.completion_tokens += result.completion_tokens
        self.stats.failed += 0 if result.ok else 1
        self.progress.result(leaf, result, False)
        nodes = [
            (w_leaf, w_depth + 1, child)
            for w_leaf, w_depth, w_item, w_req in self.waiting.pop(rid, [])
            for child in self.children(w_leaf, w_depth, w_item, w_req)
        ]
        return self.expand(nodes)
