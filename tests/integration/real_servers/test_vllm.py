"""The client's dialect rules against vLLM's CPU build (optional: see the `vllm_server` fixture).

vLLM enforces `response_format` schemas, reports `max_model_len` at GET /v1/models, answers 404 for an
unknown model and 400 for `max_tokens` beyond the context, and honours seeds. The tiny model is random:
only protocol behaviour is asserted.
"""

from __future__ import annotations

import pytest

from labpipe.errors import UserError
from labpipe.llm.client import make_client
from labpipe.llm.types import ModelSpec
from tests.support.chat import ask

pytestmark = pytest.mark.integration

SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "integer"}},
    "required": ["a"],
    "additionalProperties": False,
}


def spec(server, **kw) -> ModelSpec:
    return ModelSpec(
        server.base_url, **{"model": "tiny", "concurrency": 2, "timeout_s": 120, "max_retries": 1, **kw}
    )


def test_probe_context_and_capped_max_tokens(vllm_server):
    client = make_client(spec(vllm_server))
    results = client.complete([ask(i, schema=SCHEMA, max_tokens=4000) for i in range(2)])
    assert client.stats.dialect["structured_output"] == "json_schema"
    assert client.stats.dialect["context_length"] == 1024
    assert client.stats.errors["context_length"] == 0  # capped before sending: no 400 from vLLM
    for r in results:
        assert r.ok or r.error.startswith(("truncated", "not_json", "schema")), r.error


def test_a_prompt_longer_than_max_model_len_fails_with_vllms_reason(vllm_server):
    client = make_client(spec(vllm_server))
    results = client.complete([ask(0, max_tokens=8), ask(1, "word " * 3000, max_tokens=8)])
    assert results[0].ok and not results[1].ok
    assert results[1].error.startswith("context_length:") and "1024" in results[1].error


def test_unknown_model_is_a_user_error(vllm_server):
    with pytest.raises(UserError, match="does not serve model 'nope'"):
        make_client(spec(vllm_server, model="nope")).complete([ask(0)])


# issue 19 item 7 ("dialect gaps"), against vLLM 0.32's CPU build ------------------------------------------


def test_a_prompt_that_alone_exceeds_the_context_fails_at_once_with_its_size(vllm_server):
    """vLLM 0.32: "... your prompt contains at least 1025 input tokens, which exceeds this limit even without
    any output tokens": the prompt's size is read, so the request is not re-sent (a capped re-send cannot
    fit), and the message names both sizes."""
    client = make_client(spec(vllm_server))
    (result,) = client.complete([ask(0, "word " * 600, max_tokens=8)])
    assert result.attempts == 1 and client.stats.errors["context_length"] == 1
    assert result.error.startswith(
        "context_length: the prompt's 1025 tokens leave no room for a reply in the context of 1024 tokens"
    ), result.error
    assert "contains at least 1025 input tokens" in result.error  # the server's own words follow


def test_a_prompt_longer_than_the_character_bound_fails_at_once(vllm_server):
    """vLLM 0.32 refuses a prompt longer than 13 characters per token of context before tokenizing it ("your
    prompt contains 15031 characters (more than 13312 characters, which is the upper bound for 1024 input
    tokens)"): no token count, but no capped re-send can fit either."""
    client = make_client(spec(vllm_server))
    (result,) = client.complete([ask(0, "word " * 3000, max_tokens=8)])
    assert result.attempts == 1 and client.stats.errors["context_length"] == 1
    assert result.error.startswith(
        "context_length: the prompt leaves no room for a reply in the context of 1024 tokens"
    ), result.error
    assert "upper bound for 1024 input tokens" in result.error


LONG = {  # no reply fits in the room the client gives: every attempt is cut at max_tokens
    "type": "object",
    "properties": {"a": {"type": "string", "minLength": 2000}},
    "required": ["a"],
    "additionalProperties": False,
}


def test_a_cut_reply_with_no_known_context_gets_more_room_once_not_without_bound(vllm_server):
    """Behind a gateway that lists the model without `max_model_len`, the context is unknown: a reply cut at
    max_tokens is re-asked (another seed each time) with twice the room once, not 2x, 4x, 8x ..."""
    from .gateway import ContextHidingGateway

    with ContextHidingGateway(vllm_server.base_url) as gateway:
        client = make_client(spec(gateway, response_format="json_schema", schema_retries=3, final_pass=False))
        (result,) = client.complete([ask(0, schema=LONG, max_tokens=100)])
    assert client.stats.dialect["context_length"] is None
    assert result.error.startswith("truncated") and result.attempts == 4, result.error
    assert [b["max_tokens"] for b in gateway.chats] == [100, 200, 200, 200]  # old: 100, 200, 400, 800
    assert len({b.get("seed") for b in gateway.chats}) == 4  # every re-ask with another seed
    assert result.completion_tokens == client.stats.completion_tokens == 700  # vLLM's usage, every attempt


def test_the_reply_cache_keys_on_what_vllm_reports_about_the_model(vllm_server):
    """Issue 19 item 3: vLLM's `root` (the weights it loaded) and `max_model_len` from GET /v1/models are in
    the model identity, so another model served as `tiny` keys other replies."""
    from labpipe.llm.cache import model_identity

    client = make_client(spec(vllm_server))
    assert client.served_identity() == {"root": str(vllm_server.model), "max_model_len": 1024}
    identity = model_identity(client)
    assert identity.startswith("model:tiny@") and identity == model_identity(make_client(spec(vllm_server)))
