"""Nothing waits that need not (issue 19): the structured-output probe does not hold the flow back where
the server is known to enforce response_format, and the client sends the longest dependency chains first
(over real HTTP to the fake OpenAI-compatible teacher; ordering only, no wall-clock asserts)."""

from __future__ import annotations

import logging
import threading

import pytest

from labpipe.generation.flow import load_flows, plan, start_items
from labpipe.llm.client import make_client
from labpipe.llm.json_extract import SCHEMA_MARKER
from labpipe.llm.structured import PROBE_PROMPT
from labpipe.llm.types import ChatRequest, ModelSpec
from tests.support.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.integration

SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string", "minLength": 5, "maxLength": 60}},
    "required": ["question"],
    "additionalProperties": False,
}
VLLM = {
    "max_context_tokens": 4096,
    "context_dialect": "vllm",
    "report_context": True,
}  # GET /models as vLLM's


def chat(i: int, priority: int = 0, **kw) -> ChatRequest:
    return ChatRequest(
        [{"role": "user", "content": f"Write question number {i}."}], f"r{i}", priority=priority, **kw
    )


class SlowProbe:
    """A latency for the fake: the probe's reply waits until a flow request has arrived (at most 10 s)."""

    def __init__(self) -> None:
        self.flow_arrived = threading.Event()
        self.arrived_during_probe: bool | None = None

    def __call__(self, request: dict) -> float:
        if PROBE_PROMPT in str(request):  # (a fake that ignores response_format drops it before this)
            self.arrived_during_probe = self.flow_arrived.wait(10)
        else:
            self.flow_arrived.set()
        return 0.0


def test_the_first_flow_requests_do_not_wait_for_a_slow_probe():
    slow = SlowProbe()
    with FakeOpenAIServer(latency_fn=slow, **VLLM) as server:
        client = make_client(ModelSpec(server.base_url, model=server.model, concurrency=4))
        results = client.complete([chat(i, schema=SCHEMA) for i in range(6)])
    assert slow.arrived_during_probe is True  # a flow request arrived before the probe's reply
    assert all(r.ok and r.attempts == 1 for r in results)
    assert client.stats.probes == 1 and client.stats.dialect["structured_output"] == "json_schema"
    flow = [b for b in server.requests if "labpipe_probe" not in str(b)]
    assert len(flow) == 6 and all(b["response_format"]["json_schema"]["schema"] == SCHEMA for b in flow)


@pytest.mark.parametrize("server_kind", ["ignores", "rejects"])
def test_the_probe_still_decides_when_the_known_server_does_not_enforce(server_kind, caplog):
    """Sent before the verdict in json_schema mode, a request whose reply was unusable (the field ignored)
    or refused (the field rejected) is sent again with the schema in the prompt: nothing is lost. (The fake
    refuses the probe before its latency: there the probe is not slow, and the requests race it.)"""
    caplog.set_level(logging.WARNING, logger="labpipe.llm")
    slow = SlowProbe()
    kind = {"ignores": {"ignores_response_format": True}, "rejects": {"supports_response_format": False}}
    with FakeOpenAIServer(latency_fn=slow, **VLLM, **kind[server_kind]) as server:
        client = make_client(ModelSpec(server.base_url, model=server.model, concurrency=4, final_pass=False))
        results = client.complete([chat(i, schema=SCHEMA) for i in range(6)])
        again = client.complete([chat(9, schema=SCHEMA)])
    assert slow.arrived_during_probe is (True if server_kind == "ignores" else None)
    assert all(r.ok for r in results + again)
    assert client.stats.probes == 1 and client.stats.dialect["structured_output"] == "prompt"
    assert client.stats.failures == {} and client.stats.retries == 0
    last = server.requests[-1]
    assert "response_format" not in last and SCHEMA_MARKER in last["messages"][-1]["content"]
    assert sum("schema in the prompt" in r.message for r in caplog.records) == 1


def test_the_queue_sends_the_longest_chain_first_and_first_come_among_equals():
    with FakeOpenAIServer() as server:
        client = make_client(ModelSpec(server.base_url, model=server.model, concurrency=1))
        requests = [chat(0, 1), chat(1, 1), chat(2, 3), chat(3, 2), chat(4, 3)]
        results = client.complete(requests)
    assert [r.request_id for r in results] == ["r0", "r1", "r2", "r3", "r4"]  # results in request order
    sent = [b["messages"][0]["content"][-2] for b in server.requests]
    assert sent == ["2", "4", "3", "0", "1"]


def test_a_new_items_first_step_goes_ahead_of_another_items_last_step():
    """A streamed flow: the reply to r0 brings a last-step follow-up (a chain of 1), which waits behind the
    first steps (chains of 3) already queued; under the adaptive limit too (the gate keeps the order)."""
    for adaptive in (True, False):
        with FakeOpenAIServer() as server:
            spec = ModelSpec(
                server.base_url, model=server.model, concurrency=1, adaptive_concurrency=adaptive
            )
            client = make_client(spec)
            results = client.complete(
                [chat(0, 3), chat(1, 3), chat(2, 3)],
                on_result=lambda r: [chat(10, 1)] if r.request_id == "r0" else None,
            )
        assert all(r.ok for r in results)
        assert [b["messages"][0]["content"].split()[-1] for b in server.requests] == ["0.", "1.", "2.", "10."]


def test_a_flow_gives_each_request_its_chain_length():
    flow = load_flows()["freeform_skill"]
    record = {"leaf_id": "a/b", "kind": "freeform_skill", "task_description": "haiku", "seed_examples": []}
    item = start_items(flow, record)[0]
    steps = flow.generate_steps
    first = plan(flow, steps[0], [item])
    assert steps[0].fan_out > 1
    assert [r.priority for _, r in first] == [len(steps)] + [0] * (steps[0].fan_out - 1)  # one carries it on
    last = plan(flow, steps[-1], [{**item, "question": "Why?"}])
    assert {r.priority for _, r in last} == {1}
    assert all(
        r.priority == 0
        for _, r in plan(flow, flow.critique_steps[0], [{**item, "question": "?", "answer": "!"}])
    )
