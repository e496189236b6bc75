"""OpenAIChatClient against a real local HTTP server: the deterministic fake teacher (FakeOpenAIServer).

The fake is fine here because the point is the client's behaviour (concurrency, retries, faults,
parsing, secrets), not the quality of the replies.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest

from labpipe.errors import UserError
from labpipe.llm.client import make_client
from labpipe.llm.json_extract import check_schema
from labpipe.llm.openai_client import OpenAIChatClient
from labpipe.llm.types import ModelSpec
from tests.support.chat import chat, user_request
from tests.support.fake_openai import FakeOpenAIServer, FaultPlan, Reply

SCHEMA = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 5, "maxLength": 60},
        "score": {"type": "integer", "minimum": 1, "maximum": 3},
    },
    "required": ["question", "score"],
    "additionalProperties": False,
}


def spec_for(server: FakeOpenAIServer, **overrides) -> ModelSpec:
    fields = dict(
        model=server.model,
        concurrency=8,
        timeout_s=5.0,
        max_retries=3,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
    )
    fields.update(overrides)
    return ModelSpec(server.base_url, **fields)


def attempts_by_request(server: FakeOpenAIServer) -> dict[str, int]:
    counts: dict[str, int] = {}
    for body in server.requests:
        text = body["messages"][-1]["content"]
        counts[text] = counts.get(text, 0) + 1
    return counts


def test_plain_completion_results_in_order_with_usage_and_callbacks_on_caller_thread():
    calls: list[tuple[str, int]] = []
    with FakeOpenAIServer() as server:
        client = make_client(spec_for(server))
        results = client.complete(
            [chat(i) for i in range(20)],
            on_result=lambda r: calls.append((r.request_id, threading.get_ident())),
        )
    assert [r.request_id for r in results] == [f"r{i}" for i in range(20)]
    assert all(r.ok and r.text and r.completion_tokens > 0 and r.attempts == 1 for r in results)
    assert sorted(c[0] for c in calls) == sorted(r.request_id for r in results)
    assert {c[1] for c in calls} == {threading.get_ident()}
    assert client.stats.requests == 20 and client.stats.completed == 20 and client.stats.retries == 0
    assert client.stats.prompt_tokens == sum(r.prompt_tokens for r in results) > 0


def test_model_name_comes_from_the_endpoint_when_not_given():
    with FakeOpenAIServer(model="served-model") as server:
        client = make_client(ModelSpec(server.base_url))
        assert client.model_name == "served-model"
        assert client.complete([chat(0)])[0].ok
        assert server.requests[0]["model"] == "served-model"


def test_unknown_model_is_a_user_error():
    with FakeOpenAIServer() as server:
        client = make_client(spec_for(server, model="no-such-model"))
        with pytest.raises(UserError, match="no-such-model"):
            client.complete([chat(0)])


def test_retry_after_is_honoured_on_429():
    plan = FaultPlan(first_attempts={"rate_limit": 1}, retry_after_s=0.3)
    with FakeOpenAIServer(faults=plan) as server:
        client = make_client(spec_for(server, concurrency=4))
        results = client.complete([chat(i) for i in range(4)])
    assert all(r.ok and r.attempts == 2 for r in results)
    assert server.status_counts[429] == 4 and client.stats.errors["rate_limit"] == 4
    first_seen: dict[str, float] = {}
    for body, at in zip(server.requests, server.arrival_times, strict=True):
        key = body["messages"][-1]["content"]
        if key in first_seen:  # the retry came no sooner than Retry-After (backoff alone is <= 0.05 s)
            assert at - first_seen[key] >= 0.3 - 0.01
        first_seen.setdefault(key, at)


@pytest.mark.parametrize("fault", ["server_error", "unavailable", "overloaded", "drop", "slow", "bad_body"])
def test_transient_faults_are_retried(fault):
    plan = FaultPlan(first_attempts={fault: 1}, slow_s=5.0)
    with FakeOpenAIServer(faults=plan) as server:
        client = make_client(spec_for(server, timeout_s=1.5))
        results = client.complete([chat(i) for i in range(6)])
    assert all(r.ok and r.attempts == 2 for r in results), [r.error for r in results]
    assert client.stats.retries == 6
    kind = {
        "unavailable": "overloaded",  # 503: the server said it cannot take more now
        "drop": "connection",
        "slow": "timeout",
        "bad_body": "bad_response",
    }
    assert client.stats.errors[kind.get(fault, fault)] == 6


def test_give_up_after_max_retries_returns_an_error_and_the_others_succeed():
    def poison(request, attempt):
        return "server_error" if "number 3." in request["messages"][-1]["content"] else None

    with FakeOpenAIServer(faults=FaultPlan(hook=poison)) as server:
        client = make_client(spec_for(server, max_retries=2))
        results = client.complete([chat(i) for i in range(8)])
    failed = [r for r in results if not r.ok]
    assert [r.request_id for r in failed] == ["r3"]
    assert failed[0].attempts == 3 and "server_error" in failed[0].error and "HTTP 500" in failed[0].error
    # 3 attempts, then 3 more in the final pass, which comes after every other request
    assert attempts_by_request(server)["Write question number 3."] == 6
    assert client.stats.failed == 1 and client.stats.completed == 7 and client.stats.final_pass == 1
    assert client.stats.failures == {"server_error": 1}


def test_seeded_fault_rates_still_complete_every_request():
    plan = FaultPlan(rates={"rate_limit": 0.15, "server_error": 0.1, "drop": 0.05}, seed=7, retry_after_s=0.0)
    with FakeOpenAIServer(faults=plan) as server:
        client = make_client(spec_for(server, concurrency=16, max_retries=8))
        results = client.complete([chat(i) for i in range(120)])
    assert all(r.ok for r in results)
    assert server.total_requests == 120 + client.stats.retries
    assert sum(server.faults_injected.values()) == client.stats.retries > 0


def test_concurrency_is_bounded():
    with FakeOpenAIServer(latency_s=0.05) as server:
        client = make_client(spec_for(server, concurrency=5))
        assert all(r.ok for r in client.complete([chat(i) for i in range(40)]))
    assert server.max_in_flight == 5


def test_response_format_schema_is_sent_and_enforced():
    with FakeOpenAIServer(faults=FaultPlan(first_attempts={"schema_violation": 1})) as server:
        client = make_client(spec_for(server, response_format="json_schema"))
        results = client.complete([chat(i, schema=SCHEMA) for i in range(5)])
    assert all(r.ok and r.attempts == 2 and check_schema(r.data, SCHEMA) is None for r in results)
    assert all(b["response_format"]["json_schema"]["schema"] == SCHEMA for b in server.requests)
    assert client.stats.errors["schema"] == 5 and client.stats.probes == 0


@pytest.mark.parametrize("fault", ["non_json", "truncated_json", "schema_violation"])
def test_bad_structured_replies_are_retried_a_bounded_number_of_times(fault):
    # The fake answers every attempt with a fresh unusable reply (the attempt number is in it).
    def unusable(request, attempt):
        if fault == "truncated_json":
            body = {"content": f'{{"question": "attempt {attempt}', "finish": "length"}
        elif fault == "non_json":
            body = {"content": f"Attempt {attempt}: I cannot do that.", "finish": "stop"}
        else:
            body = {"content": json.dumps({"attempt": attempt}), "finish": "stop"}
        choice = {"index": 0, "message": {"role": "assistant", "content": body["content"]}}
        return Reply(
            200,
            {
                "choices": [{**choice, "finish_reason": body["finish"]}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3},
            },
        )

    with FakeOpenAIServer(faults=FaultPlan(hook=unusable)) as server:
        client = make_client(
            spec_for(server, schema_retries=2, response_format="json_schema", final_pass=False)
        )
        (result,) = client.complete([chat(0, schema=SCHEMA)])
    assert not result.ok and result.attempts == 3 and server.total_requests == 3
    expected = {"schema_violation": "schema", "non_json": "not_json", "truncated_json": "truncated"}[fault]
    assert result.error.startswith(expected)
    assert (result.prompt_tokens, result.completion_tokens) == (15, 9)  # every attempt is paid for


def test_fallback_to_prompting_and_tolerant_extraction_when_response_format_is_rejected():
    with FakeOpenAIServer(supports_response_format=False) as server:
        client = make_client(spec_for(server, concurrency=1))
        results = client.complete([chat(i, schema=SCHEMA) for i in range(4)])
    assert all(r.ok and check_schema(r.data, SCHEMA) is None for r in results)
    assert all("```json" in r.text and not r.text.startswith("{") for r in results)  # prose + fence around it
    assert server.status_counts[400] == 1  # only the probe tried response_format
    assert all("response_format" not in b for b in server.requests[1:])
    assert client.stats.dialect["structured_output"] == "prompt"
    assert "response_format is not supported" in client.stats.dialect["structured_output_reason"]


def test_prompt_too_long_fails_that_request_only_without_retry():
    long_prompt = user_request("word " * 500, "long")
    with FakeOpenAIServer(max_context_tokens=100) as server:
        client = make_client(spec_for(server))
        results = client.complete([chat(0), long_prompt, chat(1)])
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error.startswith("context_length") and results[1].attempts == 1
    assert server.total_requests == 3


def test_api_key_is_sent_as_bearer_and_never_shown(monkeypatch):
    secret = "sk-test-7f3a9c2e5b"
    monkeypatch.setenv("TEACHER_KEY", secret)

    def echo_key(request, attempt):  # a server that echoes the key back, as some do in 4xx messages
        if "number 1." in request["messages"][-1]["content"]:
            return Reply(400, {"error": {"message": f"bad request for key {secret}"}})
        return None

    with FakeOpenAIServer(api_key=secret, faults=FaultPlan(hook=echo_key)) as server:
        spec = spec_for(server, api_key_env="TEACHER_KEY")
        client = make_client(spec)
        results = client.complete([chat(0), chat(1)])
        assert results[0].ok and not results[1].ok
        shown = [
            repr(client),
            repr(spec),
            json.dumps(spec.describe()),
            results[1].error,
            repr(client.httpx_options()),
        ]
        assert all(secret not in text for text in shown)
        assert "***" in results[1].error

        monkeypatch.setenv("TEACHER_KEY", "sk-wrong-key-123")
        with pytest.raises(UserError) as err:
            make_client(spec).complete([chat(2)])
        assert "TEACHER_KEY" in str(err.value) and "sk-wrong-key-123" not in str(err.value)
        assert secret not in str(err.value)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_endpoint_is_a_user_error_with_the_url():
    url = f"http://127.0.0.1:{_free_port()}/v1"
    client = OpenAIChatClient(ModelSpec(url, model="m", max_retries=1, backoff_base_s=0.01))
    with pytest.raises(UserError) as err:
        client.complete([chat(0)])
    assert url in str(err.value) and "endpoint-unreachable" in str(err.value) and "Fix:" in str(err.value)
