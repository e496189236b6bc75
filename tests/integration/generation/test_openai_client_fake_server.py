"""The fake teacher itself (a deterministic fake OpenAI-compatible server for testing client behaviour):
its replies, its fault plan and its counters, spoken to over real HTTP with plain httpx."""

from __future__ import annotations

import httpx
import pytest

from labpipe.llm.json_extract import check_schema, extract_json
from tests.support.chat import chat_body, schema_body
from tests.support.fake_openai import FakeOpenAIServer, FaultPlan, schema_instance

SCHEMA = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 10, "maxLength": 40},
        "level": {"enum": ["easy", "hard"]},
        "score": {"type": "integer", "exclusiveMinimum": 0, "maximum": 3},
        "weight": {"type": "number", "minimum": 0.5, "maximum": 2},
        "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}, "minItems": 1, "maxItems": 3},
        "note": {"anyOf": [{"type": "null"}, {"type": "string"}]},
        "code": {"type": "string", "pattern": "^[a-z]+$"},
    },
    "required": ["question", "level", "score", "tags"],
    "$defs": {"tag": {"type": "string", "maxLength": 8}},
}


def structured(content: str) -> dict:
    return schema_body(content, SCHEMA)


def test_replies_are_deterministic_openai_shaped_and_schema_valid():
    with FakeOpenAIServer() as server, httpx.Client(base_url=server.base_url) as http:
        models = http.get("/models").json()
        assert models["data"][0]["id"] == "fake-teacher"
        first = http.post("/chat/completions", json=structured("q1")).json()
        again = http.post("/chat/completions", json=structured("q1")).json()
        other = http.post("/chat/completions", json=structured("q2")).json()
        plain = http.post("/chat/completions", json=chat_body("hello")).json()
    content = first["choices"][0]["message"]["content"]
    assert content == again["choices"][0]["message"]["content"] != other["choices"][0]["message"]["content"]
    assert check_schema(extract_json(content), SCHEMA) is None
    assert first["usage"]["completion_tokens"] > 0 and first["choices"][0]["finish_reason"] == "stop"
    assert plain["choices"][0]["message"]["content"].endswith(".")
    assert server.total_requests == 4 and server.models_requests == 1 and server.status_counts[200] == 4


@pytest.mark.parametrize("seed", range(5))
def test_schema_instances_validate(seed):
    import random

    assert check_schema(schema_instance(SCHEMA, random.Random(seed)), SCHEMA) is None


def test_fault_plan_is_deterministic_per_request_and_attempt():
    plan = FaultPlan(rates={"server_error": 0.3, "rate_limit": 0.2}, seed=1)
    picks = [plan.pick({}, 99, f"key{i}", attempt) for i in range(50) for attempt in range(3)]
    assert picks == [plan.pick({}, 99, f"key{i}", attempt) for i in range(50) for attempt in range(3)]
    assert 0.3 < sum(p is not None for p in picks) / len(picks) < 0.7
    assert FaultPlan(first={"drop": 2, "slow": 1}).pick({}, 2, "k", 0) == "slow"
    assert FaultPlan(first_attempts={"non_json": 1}).pick({}, 5, "k", 1) is None
    with pytest.raises(ValueError, match="unknown fault"):
        FaultPlan(rates={"meteor": 0.1})


def test_faults_and_errors_over_http():
    plan = FaultPlan(
        first={
            "rate_limit": 1,
            "unavailable": 1,
            "truncated_json": 1,
            "non_json": 1,
            "schema_violation": 1,
            "bad_body": 1,
        },
        retry_after_s=2,
    )
    with FakeOpenAIServer(faults=plan, api_key="k", max_context_tokens=5) as server:
        http = httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer k"})
        limited = http.post("/chat/completions", json=structured("a"))
        assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
        assert http.post("/chat/completions", json=structured("a")).status_code == 503
        truncated = http.post("/chat/completions", json=structured("a")).json()["choices"][0]
        assert truncated["finish_reason"] == "length"
        with pytest.raises(ValueError):
            extract_json(truncated["message"]["content"])
        prose = http.post("/chat/completions", json=structured("a")).json()["choices"][0]["message"][
            "content"
        ]
        with pytest.raises(ValueError):
            extract_json(prose)
        violation = http.post("/chat/completions", json=structured("a")).json()["choices"][0]["message"][
            "content"
        ]
        assert check_schema(extract_json(violation), SCHEMA) is not None
        with pytest.raises(ValueError):
            http.post("/chat/completions", json=structured("a")).json()
        too_long = http.post("/chat/completions", json=chat_body("one two three four five six"))
        assert too_long.status_code == 400 and "maximum context length" in too_long.text
        assert httpx.post(server.base_url + "/chat/completions", json=chat_body("x")).status_code == 401
        assert http.post("/chat/completions", json={**chat_body("x"), "model": "other"}).status_code == 404
    assert sum(server.faults_injected.values()) == 6


def test_rejects_response_format_when_unsupported():
    with (
        FakeOpenAIServer(supports_response_format=False) as server,
        httpx.Client(base_url=server.base_url) as http,
    ):
        assert http.post("/chat/completions", json=structured("a")).status_code == 400
        assert http.post("/chat/completions", json=chat_body("a")).status_code == 200


def test_dropped_connection():
    with (
        FakeOpenAIServer(faults=FaultPlan(first={"drop": 1})) as server,
        httpx.Client(base_url=server.base_url) as http,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            http.post("/chat/completions", json=chat_body("a"))
        assert http.post("/chat/completions", json=chat_body("a")).status_code == 200
    assert server.status_counts["dropped"] == 1
