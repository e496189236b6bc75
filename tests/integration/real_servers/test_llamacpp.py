"""The client's dialect rules against llama.cpp's real server (xllamacpp) serving the tiny model as GGUF.

The tiny model is random: these tests assert on protocol behaviour, counts and messages, never content.
"""

from __future__ import annotations

import httpx
import pytest

from labpipe.llm.client import ModelSpec, make_client
from tests.support.chat import ask

from .conftest import llamacpp_server

pytestmark = pytest.mark.integration

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": 12}},
    "required": ["answer"],
    "additionalProperties": False,
}


def spec(server, **kw) -> ModelSpec:
    fields = dict(model="tiny", concurrency=2, timeout_s=60, max_retries=2, backoff_base_s=0.05)
    fields.update(kw)
    return ModelSpec(server.base_url, **fields)


def test_the_gguf_export_computes_what_transformers_computes(tiny_model, llamacpp):
    """Next-token log-probabilities from llama.cpp equal the transformers model's (the q/k permutation)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompt = "The teacher model writes a question"
    reply = httpx.post(
        llamacpp.base_url.removesuffix("/v1") + "/completion",
        json={"prompt": prompt, "n_predict": 1, "n_probs": 5, "temperature": 0, "cache_prompt": False},
        timeout=60,
    ).json()
    top = reply["completion_probabilities"][0]["top_logprobs"]
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        logits = model(**tok(prompt, return_tensors="pt")).logits[0, -1]
    expected = torch.log_softmax(logits.float(), -1)
    assert [t["id"] for t in top] == expected.topk(5).indices.tolist()
    for t in top:
        assert abs(t["logprob"] - expected[t["id"]].item()) < 1e-3


def test_probe_finds_the_schema_enforced_and_context_reported(llamacpp):
    client = make_client(spec(llamacpp))
    results = client.complete([ask(i, schema=SCHEMA, max_tokens=64) for i in range(2)])
    assert client.stats.probes == 1
    assert client.stats.dialect["structured_output"] == "json_schema"
    assert client.stats.dialect["context_length"] == 1024  # per slot: 2048 / 2 slots
    for r in results:  # a grammar-bound reply is valid or was cut at max_tokens; either way it says so
        assert r.ok or r.error.startswith("truncated"), r.error


def test_a_cut_schema_bound_reply_is_reasked_with_more_room_and_another_seed(llamacpp):
    client = make_client(spec(llamacpp, response_format="json_schema", schema_retries=3, final_pass=False))
    (result,) = client.complete([ask(0, schema=SCHEMA, max_tokens=2)])
    # llama.cpp answers 500 "does not match the expected peg-native format" (or a cut reply) when
    # max_tokens ends a grammar-bound reply; the client re-asks at 2x the room, then 4x, ... (bounded)
    cut = client.stats.errors["truncated"]
    assert cut >= 1 and result.attempts == cut + (1 if result.ok else 0) <= 4
    assert result.ok or (result.error.startswith("truncated") and "max_tokens=16" in result.error)
    assert result.prompt_tokens > 0  # the cut attempts were paid for and counted
    assert result.completion_tokens >= 2 * cut  # each cut attempt generated at least its max_tokens


def test_a_prompt_longer_than_the_slot_fails_with_the_servers_reason(llamacpp):
    client = make_client(spec(llamacpp))
    long_text = "word " * 3000
    results = client.complete([ask(0, max_tokens=8), ask(1, long_text, max_tokens=8), ask(2, max_tokens=8)])
    assert [r.ok for r in results] == [True, False, True]
    error = results[1].error
    assert error.startswith("context_length: ") and "context of 1024 tokens" in error
    assert "exceeds the available context size" in error  # the server's own words
    assert results[1].attempts == 1 and client.stats.final_pass == 0


def test_max_tokens_is_capped_so_a_reply_never_runs_past_the_slot(llamacpp):
    client = make_client(spec(llamacpp))
    text = "Tell me about the river and the light. " * 20
    (result,) = client.complete([ask(0, text, max_tokens=5000)])
    assert result.ok
    assert result.prompt_tokens + result.completion_tokens <= 1024


def test_a_small_context_window_given_by_option(tiny_gguf, tmp_path):
    """--context-length below the server's: the first reply teaches the prompt's tokens per character
    (before it, max_tokens is capped by an estimate); later requests then fit the given window."""
    server = llamacpp_server(tiny_gguf, tmp_path, ctx=512, parallel=1).start()
    try:
        client = make_client(spec(server, context_length=300, concurrency=1))
        first, *rest = client.complete(
            [ask(i, f"Hello number {i}. " * 14, max_tokens=4000) for i in range(3)]
        )
    finally:
        server.stop()
    assert client.stats.dialect["context_length"] == 300
    assert first.ok and first.completion_tokens < 4000
    assert all(r.ok and r.prompt_tokens + r.completion_tokens <= 300 for r in rest)
