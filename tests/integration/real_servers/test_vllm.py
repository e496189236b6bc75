"""The client's dialect rules against vLLM's CPU build (optional: see the `vllm_server` fixture).

vLLM enforces `response_format` schemas, reports `max_model_len` at GET /v1/models, answers 404 for an
unknown model and 400 for `max_tokens` beyond the context, and honours seeds. The tiny model is random:
only protocol behaviour is asserted.
"""

from __future__ import annotations

import pytest

from labpipe.errors import UserError
from labpipe.llm.client import ModelSpec, make_client
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
