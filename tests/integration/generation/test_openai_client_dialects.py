"""The client's dialect rules against the fake server speaking each real server's dialect (real HTTP).

The fake answers like vLLM, llama.cpp, TGI, OpenAI or transformers serve where it matters here (error
wordings, context reporting, response_format handling); tests/integration/real_servers/ checks the same
rules against the real llama.cpp server and `transformers serve`.
"""

from __future__ import annotations

import logging

import pytest

from labpipe.errors import UserError
from labpipe.llm.client import make_client
from labpipe.llm.failures import check_failures
from labpipe.llm.json_extract import SCHEMA_MARKER, check_schema
from labpipe.llm.types import ClientStats, ModelSpec
from tests.support.chat import chat
from tests.support.fake_openai import FakeOpenAIServer, FaultPlan, Reply

SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string", "minLength": 5, "maxLength": 60}},
    "required": ["question"],
    "additionalProperties": False,
}


def spec_for(server: FakeOpenAIServer, **overrides) -> ModelSpec:
    fields = dict(model=server.model, concurrency=4, timeout_s=5.0, max_retries=2, backoff_base_s=0.01)
    fields.update(overrides)
    return ModelSpec(server.base_url, **fields)


# structured output: the probe ----------------------------------------------------------------------


def test_probe_finds_an_enforcing_server_and_keeps_response_format():
    with FakeOpenAIServer() as server:
        client = make_client(spec_for(server))
        results = client.complete([chat(i, schema=SCHEMA) for i in range(3)])
    assert all(r.ok for r in results)
    assert client.stats.probes == 1 and client.stats.dialect["structured_output"] == "json_schema"
    probe, *rest = server.requests
    assert "labpipe_probe" in str(probe["response_format"])
    assert all(b["response_format"]["json_schema"]["schema"] == SCHEMA for b in rest)


def test_a_server_that_ignores_response_format_gets_the_schema_in_the_prompt(caplog):
    caplog.set_level(logging.WARNING, logger="labpipe.llm.structured")
    with FakeOpenAIServer(ignores_response_format=True) as server:
        client = make_client(spec_for(server))
        results = client.complete([chat(i, schema=SCHEMA) for i in range(3)])
        again = client.complete([chat(9, schema=SCHEMA)])  # the same stage: no second probe
    assert all(r.ok and check_schema(r.data, SCHEMA) is None for r in results + again)
    assert client.stats.probes == 1 and client.stats.dialect["structured_output"] == "prompt"
    assert "ignores the field" in client.stats.dialect["structured_output_reason"]
    assert all(SCHEMA_MARKER in b["messages"][-1]["content"] for b in server.requests[1:])
    assert all("response_format" not in b for b in server.requests[1:])
    assert sum("schema in the prompt" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize("mode", ["json_schema", "json_object", "prompt"])
def test_a_forced_mode_skips_the_probe(mode):
    with FakeOpenAIServer() as server:
        client = make_client(spec_for(server, response_format=mode))
        assert all(r.ok for r in client.complete([chat(i, schema=SCHEMA) for i in range(2)]))
    assert client.stats.probes == 0
    for body in server.requests:
        fmt = body.get("response_format")
        in_prompt = SCHEMA_MARKER in body["messages"][-1]["content"]
        assert {
            "json_schema": fmt is not None and fmt["type"] == "json_schema" and not in_prompt,
            "json_object": fmt == {"type": "json_object"} and in_prompt,
            "prompt": fmt is None and in_prompt,
        }[mode]


def test_an_unknown_mode_is_a_user_error():
    with pytest.raises(UserError, match="response-format"):
        make_client(ModelSpec("http://127.0.0.1:9/v1", response_format="xml"))


# error classification ------------------------------------------------------------------------------


def test_an_unrelated_400_fails_that_request_and_keeps_response_format():
    def bad(request, attempt):
        return "bad_request" if "number 1." in request["messages"][-1]["content"] else None

    with FakeOpenAIServer(faults=FaultPlan(hook=bad)) as server:
        client = make_client(spec_for(server))
        results = client.complete([chat(i, schema=SCHEMA) for i in range(4)])
    assert [r.ok for r in results] == [True, False, True, True]
    assert results[1].error.startswith("http: HTTP 400: invalid value for 'top_k'") and results[1].attempts == 1
    assert client.stats.dialect["structured_output"] == "json_schema"
    assert all("response_format" in b for b in server.requests)
    assert client.stats.failures == {"http": 1} and client.stats.final_pass == 0


def test_a_400_that_names_response_format_turns_it_off_once_with_the_servers_words(caplog):
    caplog.set_level(logging.WARNING, logger="labpipe.llm.structured")

    def reject(request, attempt):
        if request.get("response_format", {}).get("type") == "json_schema" and "labpipe_probe" not in str(request):
            return Reply(400, {"error": {"message": "guided decoding backend rejected the json_schema"}})
        return None

    with FakeOpenAIServer(faults=FaultPlan(hook=reject)) as server:
        client = make_client(spec_for(server, concurrency=1))
        results = client.complete([chat(i, schema=SCHEMA) for i in range(3)])
    assert all(r.ok for r in results)
    assert client.stats.dialect["structured_output"] == "prompt"
    assert "guided decoding backend rejected" in client.stats.dialect["structured_output_reason"]
    assert sum("rejected response_format" in r.message for r in caplog.records) == 1


def test_transformers_serve_wrong_model_name_is_a_user_error_not_a_response_format_problem():
    def pinned(request, attempt):
        return Reply(400, {"detail": "Server is pinned to '/models/tiny'; requested 'tiny'."})

    with FakeOpenAIServer(faults=FaultPlan(hook=pinned)) as server:
        client = make_client(spec_for(server, response_format="json_schema"))
        with pytest.raises(UserError) as err:
            client.complete([chat(0, schema=SCHEMA)])
    assert "Server is pinned to '/models/tiny'" in str(err.value) and "rule" not in str(err.value)[:0]
    assert "model" in str(err.value)


# context length ------------------------------------------------------------------------------------


def test_vllm_max_tokens_above_max_model_len_is_retried_capped():
    with FakeOpenAIServer(max_context_tokens=300, context_dialect="vllm") as server:
        client = make_client(spec_for(server))
        (result,) = client.complete([chat(0, max_tokens=1000)])
    assert result.ok and result.attempts == 2
    assert [b["max_tokens"] for b in server.requests] == [1000, server.requests[1]["max_tokens"]]
    assert server.requests[1]["max_tokens"] < 300
    assert client.stats.dialect["context_length"] == 300


def test_vllm_prompt_plus_max_tokens_is_retried_with_the_room_left():
    with FakeOpenAIServer(max_context_tokens=100, context_dialect="vllm") as server:
        client = make_client(spec_for(server))
        (result,) = client.complete([chat(0, words=60, max_tokens=80)])
    assert result.ok and result.attempts == 2
    assert server.requests[1]["max_tokens"] == 100 - 60


def test_a_reported_context_caps_max_tokens_before_sending():
    with FakeOpenAIServer(max_context_tokens=256, context_dialect="llamacpp", report_context=True) as server:
        client = make_client(spec_for(server))
        results = client.complete([chat(i, words=40, max_tokens=1000) for i in range(3)])
    assert all(r.ok and r.attempts == 1 for r in results)
    assert client.stats.dialect["context_length"] == 256
    assert all(b["max_tokens"] < 256 for b in server.requests)


def test_a_slot_end_cut_is_reasked_with_the_exact_room(tmp_path):
    # llama.cpp stops silently at the context's end: the reply is cut JSON; the re-ask knows the prompt size
    with FakeOpenAIServer(max_context_tokens=70, context_dialect="llamacpp") as server:
        client = make_client(spec_for(server, response_format="json_schema"))
        (result,) = client.complete([chat(0, words=55, schema=SCHEMA, max_tokens=64)])
    assert server.requests[0]["max_tokens"] == 64
    if not result.ok:  # the room left (15 words) may be too small for the reply: then it says why
        assert result.error.startswith("truncated") and "cut at max_tokens" in result.error


@pytest.mark.parametrize("dialect", ["llamacpp", "openai", "tgi"])
def test_a_prompt_that_alone_does_not_fit_fails_with_the_servers_reason(dialect):
    with FakeOpenAIServer(max_context_tokens=50, context_dialect=dialect) as server:
        client = make_client(spec_for(server))
        results = client.complete([chat(0), chat(1, words=80, max_tokens=10), chat(2)])
    assert [r.ok for r in results] == [True, False, True]
    error = results[1].error
    assert error.startswith("context_length:") and "80 tokens" in error and "context of 50 tokens" in error
    assert client.stats.failures == {"context_length": 1} and client.stats.final_pass == 0
    assert server.total_requests <= 4 + (dialect == "tgi")  # no futile retries


# re-asks -------------------------------------------------------------------------------------------


def test_a_reask_varies_seed_and_temperature_but_not_the_request():
    with FakeOpenAIServer(faults=FaultPlan(first_attempts={"schema_violation": 2})) as server:
        client = make_client(spec_for(server, response_format="json_schema", schema_retries=3))
        (result,) = client.complete([chat(0, schema=SCHEMA, seed=5)])
    assert result.ok and result.attempts == 3 and result.request_id == "r0"
    assert [b["seed"] for b in server.requests] == [5, 5 + 7919, 5 + 2 * 7919]
    assert [b["temperature"] for b in server.requests] == [0.0, 0.7, 0.7]
    assert len({str(b["messages"]) for b in server.requests}) == 1


def test_a_server_repeating_the_same_unusable_reply_costs_bounded_attempts():
    # the fake's non_json reply is the same whatever the seed: a server that ignores it. A request is asked
    # again once after a repeat (3 attempts), and once the endpoint has repeated itself for 3 requests
    # without ever varying, its first repeat ends the re-asks (2 attempts), however many re-asks are allowed
    with FakeOpenAIServer(faults=FaultPlan(rates={"non_json": 1.0})) as server:
        client = make_client(spec_for(server, response_format="json_schema", schema_retries=5, concurrency=1))
        results = client.complete([chat(i, schema=SCHEMA) for i in range(6)])
    assert all(not r.ok and "repeated an earlier unusable reply" in r.error for r in results)
    assert [r.attempts for r in results] == [3, 3, 2, 2, 2, 2]
    assert server.total_requests == 14 and client.stats.final_pass == 0


def test_a_chance_repeat_of_an_unusable_reply_does_not_lose_the_request():
    """The fake server's fault hook is the point here: a sampling server that returns the same short
    unusable reply twice by chance (as `{}` for a one-field schema, about once in hundreds of requests)."""

    def hook(request, attempt):
        return "non_json" if attempt < 2 else None  # the same prose twice, then a proper reply

    with FakeOpenAIServer(faults=FaultPlan(hook=hook)) as server:
        client = make_client(spec_for(server, response_format="json_schema"))  # schema_retries: the default 2
        (result,) = client.complete([chat(0, schema=SCHEMA)])
    assert result.ok and result.attempts == 3 and server.total_requests == 3


def test_a_final_pass_recovers_requests_whose_retries_ran_out():
    # every request's first 3 attempts fail; with max_retries=2 only the final pass gets through
    with FakeOpenAIServer(faults=FaultPlan(first_attempts={"server_error": 3})) as server:
        client = make_client(spec_for(server))
        results = client.complete([chat(i) for i in range(5)])
    assert all(r.ok for r in results)
    assert client.stats.final_pass == 5 and not client.stats.failures and client.stats.failed == 0
    assert client.stats.completed == 5 and server.total_requests == 5 * 4


def test_tokens_of_failed_attempts_are_counted():
    with FakeOpenAIServer(faults=FaultPlan(first_attempts={"schema_violation": 1})) as server:
        client = make_client(spec_for(server, response_format="json_schema"))
        (result,) = client.complete([chat(0, schema=SCHEMA)])
    usage = sum(b["messages"][0]["content"].count(" ") + 1 for b in server.requests)
    assert result.ok and result.attempts == 2 and result.prompt_tokens == usage == client.stats.prompt_tokens


# the stage rule --------------------------------------------------------------------------------------


def test_check_failures_groups_reasons_and_respects_the_allowed_share():
    stats = ClientStats()
    for error in ["context_length: HTTP 400: too long " + "x" * 300, "not_json: no JSON", "not_json: again"]:
        stats.record_failure(error)
    check_failures(stats, 10, max_failed_share=0.3, stage="teacher", where="gen/manifest.json")
    with pytest.raises(UserError) as err:
        check_failures(stats, 10, max_failed_share=0.0, stage="teacher", where="gen/manifest.json")
    text = str(err.value)
    assert "3 of 10 teacher requests failed" in text and "2 not_json" in text and "1 context_length" in text
    assert "x" * 300 in text  # the full reason, not a cut one


def test_http_libraries_log_nothing_per_request_unless_asked(caplog, monkeypatch):
    """Task logs carried one httpx INFO line per request, and `-v` mostly httpcore traces (issue 19)."""
    import logging

    caplog.set_level(logging.DEBUG)  # as `labpipe -v`
    with FakeOpenAIServer() as server:
        make_client(spec_for(server)).complete([chat(i) for i in range(5)])
        noisy = [r for r in caplog.records if r.name.startswith(("httpx", "httpcore"))]
        assert noisy == []
        monkeypatch.setenv("LABPIPE_HTTP_DEBUG", "1")
        logging.getLogger("httpx").setLevel(logging.NOTSET)
        logging.getLogger("httpcore").setLevel(logging.NOTSET)
        make_client(spec_for(server)).complete([chat(i) for i in range(2)])
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def test_vllm_032s_prompt_too_long_wording_fails_at_once_with_the_sizes():
    """vLLM 0.32's wording when the prompt alone exceeds the context (issue 19, measured against its CPU
    build): the prompt's size is read, so the request is not re-sent pointlessly."""

    def too_long(request, attempt):
        return Reply(400, {"error": {"message": "This model's maximum context length is 1024 tokens. However, your "
                                                "prompt contains at least 1025 input tokens. Please reduce the length "
                                                "of the input messages.", "type": "BadRequestError"}})  # fmt: skip

    with FakeOpenAIServer(faults=FaultPlan(hook=too_long)) as server:
        client = make_client(spec_for(server, response_format="prompt"))
        (result,) = client.complete([chat(0)])
    assert result.attempts == 1 and server.total_requests == 1
    assert result.error.startswith("context_length: the prompt's 1025 tokens leave no room for a reply in the "
                                   "context of 1024 tokens")  # fmt: skip


def test_a_cut_reply_with_no_known_context_gets_more_room_once_not_without_bound():
    def cut(request, attempt):  # a different cut reply each time (a sampling server that never finishes)
        if "labpipe_probe" in str(request):
            return None
        text = '{"answer": "' + "word " * (request["max_tokens"] // 2) + str(request.get("seed"))
        return Reply(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                        "finish_reason": "length"}], "usage": {}})  # fmt: skip

    with FakeOpenAIServer(faults=FaultPlan(hook=cut)) as server:
        client = make_client(spec_for(server, response_format="json_schema", schema_retries=3))
        (result,) = client.complete([chat(0, schema=SCHEMA, max_tokens=100)])
    assert not result.ok and client.stats.dialect.get("context_length") is None
    sent = [b["max_tokens"] for b in server.requests if "labpipe_probe" not in str(b)]
    assert sent[0] == 100 and max(sent) == 200  # doubled once, never 400, 800, ...


def test_llamacpps_500_for_a_cut_grammar_reply_counts_the_tokens_it_generated():
    """llama.cpp's HTTP 500 for a grammar-bound reply cut at max_tokens carries no usage (issue 19 counted
    503 of 6,747 generated tokens); the fake answers with its words, the point being what labpipe counts.
    (Against the real server: tests/integration/real_servers/test_llamacpp.py, under a Llama 3.x template.)"""

    def cut(request, attempt):
        if "labpipe_probe" in str(request):
            return None
        return Reply(500, {"error": {"code": 500, "type": "server_error", "message": "Failed to parse input "
                                     "at pos 12: does not match the expected peg-native format"}})  # fmt: skip

    with FakeOpenAIServer(faults=FaultPlan(hook=cut)) as server:
        spec = spec_for(server, response_format="json_schema", schema_retries=2, context_length=4096)
        client = make_client(spec)
        (result,) = client.complete([chat(0, schema=SCHEMA, max_tokens=100)])
    assert result.error.startswith("truncated") and result.attempts == 3
    # the server does not say that the reply was cut (llama.cpp also refuses uncut replies this way)
    assert "could not parse its own schema-bound reply; most often one cut at max_tokens" in result.error
    sent = [b["max_tokens"] for b in server.requests if "labpipe_probe" not in str(b)]
    assert sent == [100, 200, 400]  # the context is known: more room each time, within it
    assert result.completion_tokens == sum(sent) == client.stats.completion_tokens
