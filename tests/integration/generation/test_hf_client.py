"""HFChatClient: real generation with the tiny random model, schemas enforced by xgrammar."""

from __future__ import annotations

import pytest

from labpipe.errors import UserError
from labpipe.llm.client import make_client
from labpipe.llm.hf_client import HFChatClient
from labpipe.llm.json_extract import check_schema
from labpipe.llm.types import ChatRequest, ModelSpec
from tests.support.chat import user_request

QA = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 3},
        "answer": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["question", "answer"],
}
RATING = {
    "type": "object",
    "properties": {
        "rating": {"type": "integer", "minimum": 1, "maximum": 3},
        "rationale": {"type": "string", "maxLength": 40},
    },
    "required": ["rating", "rationale"],
    "additionalProperties": False,
}


def ask(i: int, **kw) -> ChatRequest:
    """Prompts of varied length (the batching tests pad them)."""
    return user_request(f"Question {i} about {' '.join(['word'] * (i % 5))}.", f"r{i}", **kw)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    # A ~100k-parameter model gains nothing from intra-op threads, and on a shared 2-core machine their
    # spin-waiting made generation ~25x slower.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def client(tiny_model) -> HFChatClient:
    return make_client(ModelSpec(str(tiny_model), batch_size=4))


@pytest.fixture(scope="module")
def one_at_a_time(tiny_model) -> HFChatClient:
    return make_client(ModelSpec(str(tiny_model), batch_size=1))


def test_schema_constrained_replies_parse_and_validate(client):
    requests = [
        ask(
            i,
            schema=QA if i % 2 else RATING,
            max_tokens=48 if i % 3 else 160,
            temperature=0.7 * (i % 2),
            seed=i,
        )
        for i in range(10)
    ]
    seen = []
    results = client.complete(requests, on_result=seen.append)
    for request, result in zip(requests, results, strict=True):
        assert result.ok, result.error
        assert check_schema(result.data, request.schema) is None
        assert 0 < result.completion_tokens <= request.max_tokens
        assert all(32 <= ord(c) < 127 for c in result.text)  # no control bytes from the random model
    assert sorted(r.request_id for r in seen) == sorted(r.request_id for r in requests)
    assert client.stats.completed >= 10


def test_batched_equals_one_at_a_time_at_temperature_zero(client, one_at_a_time):
    requests = [ask(i, max_tokens=24) for i in range(6)] + [
        ask(i, schema=RATING, max_tokens=40) for i in range(6, 10)
    ]
    batched = client.complete(requests)
    single = one_at_a_time.complete(requests)
    assert [r.text for r in batched] == [r.text for r in single]
    assert [r.request_id for r in batched] == [r.request_id for r in requests]
    assert all(r.text for r in batched)


def test_sampling_is_deterministic_under_a_seed(client):
    requests = [ask(i, temperature=1.0, seed=3, max_tokens=24) for i in range(4)]
    first, again = client.complete(requests), client.complete(requests)
    other = client.complete([ask(i, temperature=1.0, seed=4, max_tokens=24) for i in range(4)])
    assert [r.text for r in first] == [r.text for r in again]
    assert [r.text for r in first] != [r.text for r in other]


def test_prompt_too_long_for_the_context_fails_that_request_only(client):
    assert client.context_length > 0
    results = client.complete([ask(0, max_tokens=8), ask(1, max_tokens=client.context_length)])
    assert results[0].ok and results[1].error.startswith("context_length")


def test_model_from_s3_is_downloaded_and_used(tiny_model, s3_env):
    from labpipe import storage

    storage.s3_client().create_bucket(Bucket="models")
    storage.upload_dir(tiny_model, "s3://models/tiny")
    remote = make_client(ModelSpec("s3://models/tiny", batch_size=2))
    (result,) = remote.complete([ask(0, schema=RATING, max_tokens=40)])
    assert result.ok and check_schema(result.data, RATING) is None


def test_not_a_model_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="config.json"):
        HFChatClient(ModelSpec(str(tmp_path)))
