"""`labpipe generate`, `critique` and `evaluate mt-bench` against llama.cpp's real server (tiny model, GGUF).

The tiny model is random: grammar-bound replies are often cut at max_tokens, answers are noise and the
judge never rates. What is asserted is the protocol: the mode probed and recorded, counts that add up,
stages that fail exactly when requests failed for good and then name the server's reason, a server
killed mid-run and restarted, and a rerun that resends only what failed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labpipe.critique.stage import CritiqueConfig, run_critique
from labpipe.errors import UserError
from labpipe.evaluation.stage import EvalConfig, run_mt_bench
from labpipe.generation.stage import CHECKPOINTS, GENERATED, MANIFEST, GenerationConfig, run_generation
from labpipe.llm.options import ClientOptions
from tests.unit.critique.fixtures import SEEDS

from .conftest import llamacpp_server

pytestmark = pytest.mark.integration


def _generate_cli(server, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "labpipe.cli", "generate", "--seeds", str(SEEDS), "--out", str(out)]
    cmd += ["--teacher", server.base_url, "--teacher-model", "tiny", "--fan-out-scale", "0.1"]
    cmd += ["--no-gate", "--quiet", "--concurrency", "2", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=400)


def _lines(directory: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in directory.glob("*.jsonl")) if directory.exists() else 0


def test_generate_fails_exactly_when_requests_failed_and_names_the_servers_reason(llamacpp, tmp_path):
    done = _generate_cli(llamacpp, tmp_path / "gen")
    manifest = json.loads((tmp_path / "gen" / MANIFEST).read_text())
    client = manifest["teacher_client"]
    assert client["dialect"]["structured_output"] == "json_schema" and client["probes"] == 1
    assert client["dialect"]["context_length"] == 1024
    failures = client["failures"]
    assert sum(f["count"] for f in failures.values()) == manifest["requests_failed"]
    if manifest["requests_failed"] > 0.02 * manifest["requests_sent"]:  # beyond the default share (2%)
        assert done.returncode == 1 and not (tmp_path / "gen" / GENERATED).exists()
        assert "teacher requests failed after all retries" in done.stderr and "Traceback" not in done.stderr
        for kind, failure in failures.items():  # each kind with the server's full words
            assert f"{failure['count']} {kind} (e.g. " in done.stderr
            assert failure["example"][:60] in done.stderr
    else:
        assert done.returncode == 0, done.stderr
    # accepting failures, the same run completes without resending what completed
    again = _generate_cli(llamacpp, tmp_path / "gen", "--max-failed-share", "1")
    assert again.returncode == 0, again.stderr
    meta = json.loads(again.stdout.strip().splitlines()[-1])
    assert meta["requests_cached"] == manifest["requests_sent"] - manifest["requests_failed"]


def test_critique_against_llamacpp_records_the_judge_dialect(llamacpp, tmp_path):
    run_generation(
        GenerationConfig(
            seeds=str(SEEDS),
            out=str(tmp_path / "gen"),
            teacher=ClientOptions(endpoint=llamacpp.base_url, model="tiny", concurrency=2),
            fan_out_scale=0.1,
            gate=False,
            progress=False,
            max_failed_share=1.0,
        )
    )
    config = CritiqueConfig(
        generated=str(tmp_path / "gen"),
        out=str(tmp_path / "crit"),
        judge=ClientOptions(endpoint=llamacpp.base_url, model="tiny"),
        profile="smoke",
        max_failed_share=1.0,
    )
    try:
        run_critique(config)
    except UserError as exc:  # the random model's records may all be dropped: then it says so
        assert "empty-training-set" in str(exc)
    report = json.loads((tmp_path / "crit" / "yield_report.json").read_text())
    totals, judge = report["totals"], report["judge_client"]
    assert sum(f["count"] for f in judge["failures"].values()) == totals["judge_requests_failed"]
    if totals["judge_requests_sent"]:
        assert judge["dialect"]["structured_output"] == "json_schema" and judge["probes"] == 1
        # the judge's failures (if any) fail the stage by default, with the reasons
        if totals["judge_requests_failed"]:
            config.max_failed_share = 0.0
            with pytest.raises(UserError, match="judge requests failed after all retries"):
                run_critique(config)


def test_teacher_killed_mid_run_and_restarted_then_resume(tiny_gguf, tmp_path):
    server = llamacpp_server(tiny_gguf, tmp_path, ctx=2048, parallel=2).start()
    out = tmp_path / "gen"
    cmd = [sys.executable, "-m", "labpipe.cli", "generate", "--seeds", str(SEEDS), "--out", str(out)]
    cmd += ["--teacher", server.base_url, "--teacher-model", "tiny", "--fan-out-scale", "0.1", "--no-gate"]
    cmd += ["--quiet", "--concurrency", "2", "--max-failed-share", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _lines(out / CHECKPOINTS) < 1 and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "generation finished before the server could be killed"
        server.kill()  # the teacher crashes mid-run ...
        time.sleep(1.0)
        server.start()  # ... and comes back on the same port
        stdout, stderr = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    assert proc.returncode == 0, stderr
    manifest = json.loads((out / MANIFEST).read_text())
    attempts = manifest["teacher_client"]["failed_attempts"]
    assert attempts.get("connection", 0) + attempts.get("server_error", 0) > 0  # it noticed, and retried
    assert "connection" not in manifest["teacher_client"]["failures"]  # and nothing was lost to the crash
    # a rerun with the same output directory sends only the requests that failed for good
    server = llamacpp_server(tiny_gguf, tmp_path, ctx=2048, parallel=2).start()
    try:
        cmd[cmd.index("--teacher") + 1] = server.base_url
        rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    finally:
        server.stop()
    assert rerun.returncode == 0, rerun.stderr
    meta = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert meta["requests_cached"] == manifest["requests_sent"] - manifest["requests_failed"]


def test_mt_bench_against_llamacpp_names_a_too_small_judge_context(llamacpp, shared_data, tmp_path):
    base = dict(
        model=llamacpp.base_url,
        model_endpoint_name="tiny",
        judge=ClientOptions(llamacpp.base_url, "tiny", concurrency=2, max_retries=1),
        questions=str(shared_data / "mt_bench"),
        max_questions=2,
        max_retries=1,
        concurrency=2,
    )
    # the random judge never rates: an invalid evaluation, which fails the stage (the outputs stay)
    with pytest.raises(UserError, match="evaluation-invalid"):
        run_mt_bench(EvalConfig(out=str(tmp_path / "short"), max_new_tokens=16, **base))
    metrics = json.loads((tmp_path / "short" / "metrics.json").read_text())
    assert metrics["invalid"] is True
    assert metrics["judge_errors"] == {} and metrics["judge_requests"] >= 4  # 2 questions x 2 turns
    # answers of 1000 tokens make judge prompts longer than the judge's 1024-token slot: the stage fails
    # and says so in the server's words, instead of scoring on what is left
    with pytest.raises(UserError) as err:
        run_mt_bench(EvalConfig(out=str(tmp_path / "long"), max_new_tokens=1000, **base))
    text = str(err.value)
    assert "judge calls failed after all retries" in text and "context_length" in text
    assert "exceeds the available context size" in text and not (tmp_path / "long").exists()
