"""The client's dialect rules against the real `transformers serve` (tiny model, pinned to its path).

transformers serve answers 200 and ignores `response_format` (the schema must go into the prompt), is
greedy whatever the temperature (a re-ask gets the same reply), requires the pinned model path as the
model name (400 "Server is pinned to ...") and answers GET /v1/models with 500 without a hub cache.
The tiny model is random, so every structured reply is unusable: the point is what labpipe does then.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from labpipe.errors import UserError
from labpipe.evaluation.stage import EvalConfig, run_mt_bench
from labpipe.generation.stage import GENERATED, MANIFEST
from labpipe.llm.client import make_client
from labpipe.llm.options import ClientOptions
from labpipe.llm.types import ModelSpec
from tests.support.chat import ask
from tests.unit.critique.fixtures import SEEDS

pytestmark = pytest.mark.integration

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def spec(server, model: str, **kw) -> ModelSpec:
    return ModelSpec(server.base_url, model=model, concurrency=1, timeout_s=120, max_retries=1, **kw)


def test_ignored_response_format_is_detected_and_greedy_repeats_end_the_reasks(
    transformers_serve, tiny_model
):
    # the random model never stops: a reply is cut at max_tokens, which the context (200) caps, so the
    # re-ask (asking for twice the room) gets the same room, and greedy decoding the same reply
    client = make_client(spec(transformers_serve, str(tiny_model), schema_retries=4, context_length=200))
    (result,) = client.complete([ask(0, "Question 0?", schema=SCHEMA, max_tokens=400)])
    dialect = client.stats.dialect
    assert (
        dialect["structured_output"] == "prompt"
        and "ignores the field" in dialect["structured_output_reason"]
    )
    assert not result.ok and result.error.startswith("truncated")
    assert "repeated an earlier unusable reply" in result.error
    # 2 probes (structured output; the model name, by a one-token chat since `transformers serve` lists no
    # models) + 4 attempts: the room estimated before the first reply, then the exact room (the first
    # reply gave the prompt's size), then the same exact room again (a repeat is asked once more: it may be
    # chance), and a second word-for-word repeat ends it
    assert client.stats.requests == 4 and client.stats.probes == 2 and client.stats.final_pass == 0
    assert result.attempts == 4 and result.prompt_tokens > 0 and result.completion_tokens > 0  # all counted


def test_a_wrong_model_name_says_what_the_server_said(transformers_serve):
    client = make_client(spec(transformers_serve, "tiny"))
    with pytest.raises(UserError) as err:
        client.complete([ask(0, "Question 0?")])
    text = str(err.value)
    assert "does not serve model 'tiny'" in text and "Server is pinned to" in text
    assert "response_format" not in text


def test_no_model_name_and_no_model_list_is_a_clear_error(transformers_serve):
    client = make_client(ModelSpec(transformers_serve.base_url, max_retries=0))
    with pytest.raises(UserError) as err:
        client.complete([ask(0, "Question 0?")])
    assert "lists none (HTTP 500" in str(err.value) and "model path" in str(err.value)


def test_generate_against_transformers_serve_fails_with_the_reason(transformers_serve, tiny_model, tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(SEEDS.read_text().splitlines()[0] + "\n")  # one skill leaf: the server is slow
    cmd = [
        sys.executable,
        "-m",
        "labpipe.cli",
        "generate",
        "--seeds",
        str(seeds),
        "--out",
        str(tmp_path / "gen"),
    ]
    cmd += ["--teacher", transformers_serve.base_url, "--teacher-model", str(tiny_model)]
    cmd += [
        "--fan-out-scale",
        "0.05",
        "--no-gate",
        "--quiet",
        "--concurrency",
        "1",
        "--context-length",
        "1400",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=500)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "teacher requests failed after all retries" in done.stderr
    manifest = json.loads((tmp_path / "gen" / MANIFEST).read_text())
    client = manifest["teacher_client"]
    assert client["dialect"]["structured_output"] == "prompt"
    assert manifest["requests_failed"] == sum(f["count"] for f in client["failures"].values()) > 0
    assert set(client["failures"]) <= {"truncated", "not_json", "schema", "context_length"}
    # at most 1 + schema_retries (2) attempts per request, repeats included: no 300 futile retries
    assert client["requests"] <= 3 * manifest["requests_sent"]
    assert not (tmp_path / "gen" / GENERATED).exists()


def test_mt_bench_against_transformers_serve_counts_unrated_and_fails_as_invalid(
    transformers_serve, tiny_model, shared_data, tmp_path
):
    config = EvalConfig(
        model=transformers_serve.base_url,
        model_endpoint_name=str(tiny_model),
        judge=ClientOptions(
            endpoint=transformers_serve.base_url,
            model=str(tiny_model),
            concurrency=1,
            max_retries=1,
        ),
        questions=str(shared_data / "mt_bench"),
        max_questions=1,
        max_new_tokens=8,
        judge_attempts=2,
        concurrency=1,
        max_retries=1,
        out=str(tmp_path / "eval"),
    )
    # a random judge never rates: every judgment is an excluded no_rating and no judge call failed, so the
    # evaluation is invalid: the stage fails saying so (with what the judge said), its outputs kept
    with pytest.raises(UserError, match="evaluation-invalid") as err:
        run_mt_bench(config)
    assert "2 no_rating" in str(err.value) and "no [[rating]] in the judge's reply" in str(err.value)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["invalid"] is True and metrics["excluded"] == 2 and metrics["judge_errors"] == {}


def test_adaptive_concurrency_does_not_amplify_against_an_overloaded_server(transformers_serve, tiny_model):
    """Issue 19 item 6: with the default ceiling (32) and a short timeout, the adaptive limit starts at 4
    and stays below the ceiling, and requests sent per completed stay <= 1.2. (On this machine a fixed 32
    overloads `transformers serve` only when the machine is busy: benchmarks/bench_adaptive.py measured
    6.5x amplification then; the contrast is asserted against the fake in
    tests/integration/generation/test_adaptive_concurrency.py.)"""
    n = 48
    client = make_client(
        ModelSpec(
            transformers_serve.base_url, model=str(tiny_model), concurrency=32, timeout_s=3, max_retries=2
        )
    )
    results = client.complete([ask(i, f"Question {i}?", max_tokens=32) for i in range(n)])
    completed = sum(r.ok for r in results)
    assert completed == n
    assert client.stats.requests <= 1.2 * completed
    assert client.limit is not None and client.limit.peak < 32
