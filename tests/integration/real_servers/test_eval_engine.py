"""MT-Bench's serving engine against a real server process: llama.cpp's server from the `xllamacpp` wheel,
started by labpipe itself from the tiny model's GGUF export (the same start / health / answer / stop path
the vLLM engine takes on a GPU pod; only the command line differs, see tests/unit/evaluation/test_engines.py).

The tiny model is random: what is asserted is the protocol: the server started once per model and stopped
afterwards (its process group gone), answers reused from the shared cache by a rerun without starting
anything, a server SIGKILLed mid-run restarted with only the missing answers asked again, one that dies
for good failing the stage with its last log lines (never a hang: pytest-timeout bounds each test), a
server that cannot start, and a context too small for the answers, refused before anything starts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labpipe.errors import UserError
from labpipe.evaluation import answering, server_process
from labpipe.evaluation.engines import EngineConfig, serve_model
from labpipe.evaluation.server_process import ServerProcess
from labpipe.evaluation.stage import EvalConfig, run_mt_bench
from labpipe.llm.options import ClientOptions

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture
def started(monkeypatch):
    """Every ServerProcess labpipe starts, so the test can kill it and check that it was stopped."""
    pytest.importorskip("xllamacpp", reason="pip install xllamacpp (scripts/setup-env.sh installs it)")
    pytest.importorskip("gguf", reason="pip install gguf (scripts/setup-env.sh installs it)")
    servers: list[ServerProcess] = []
    original = ServerProcess.start

    def start(self, timeout_s):
        if self not in servers:
            servers.append(self)
        return original(self, timeout_s)

    monkeypatch.setattr(ServerProcess, "start", start)
    yield servers
    for server in servers:  # whatever the test did, nothing may be left running
        assert not server.alive(), f"{server.what} still running"
        with pytest.raises(ProcessLookupError):
            os.killpg(server.proc.pid, 0)  # the whole process group is gone


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    """Another tiny model (other weights): the base."""
    from labpipe.models.tiny import TinyModelConfig, build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("base") / "tiny-base", TinyModelConfig(seed=1))


def _config(tiny_model, shared_data, out, base_model=None, **kw) -> EvalConfig:
    options = dict(
        model=str(tiny_model),
        base_model=str(base_model or ""),
        # in-process, schema-constrained: every verdict has a rating
        judge=ClientOptions(str(tiny_model), concurrency=2, max_retries=1),
        out=str(out),
        questions=str(shared_data / "mt_bench"),
        max_questions=3,
        max_new_tokens=16,
        concurrency=2,
        max_retries=1,
        engine=EngineConfig(kind="llamacpp", parallel=2, threads=1),
    )
    return EvalConfig(**{**options, **kw})


def test_llamacpp_engine_answers_through_a_server_and_a_rerun_reuses_every_answer(
    tiny_model, base_model, shared_data, tmp_path, started
):
    cache = str(tmp_path / "shared-cache")
    first = run_mt_bench(_config(tiny_model, shared_data, tmp_path / "first", base_model, cache=cache))
    assert [s.what for s in started] == ["llama.cpp server for 'candidate'", "llama.cpp server for 'base'"]
    assert first["engine_starts"] == 2 and first["answers_cached"] == 0
    metrics = json.loads((tmp_path / "first" / "metrics.json").read_text())
    assert metrics["answers"]["candidate"]["engine"] == "llamacpp"
    asked = metrics["answers"]["candidate"]["asked"]
    assert asked == 6 and first["answers_sent"] == 2 * asked  # 3 questions x 2 turns, each model
    rows = [json.loads(line) for line in (tmp_path / "first" / "model_answer" / "candidate.jsonl").open()]
    assert len(rows) == 3 and all(len(r["choices"][0]["turns"]) == 2 for r in rows)

    # the same models, questions and settings: nothing is started, nothing sent, the same answers
    again = run_mt_bench(_config(tiny_model, shared_data, tmp_path / "again", base_model, cache=cache))
    assert len(started) == 2 and again["engine_starts"] == 0
    assert again["answers_sent"] == 0 and again["answers_cached"] == first["answers_sent"]
    assert again["judge_requests_sent"] == 0
    for label in ("candidate", "base"):
        a = (tmp_path / "first" / "model_answer" / f"{label}.jsonl").read_text()
        b = (tmp_path / "again" / "model_answer" / f"{label}.jsonl").read_text()
        assert json.loads(a.splitlines()[0])["choices"] == json.loads(b.splitlines()[0])["choices"]


def test_a_server_killed_mid_run_is_restarted_and_only_missing_answers_are_asked_again(
    tiny_model, shared_data, tmp_path, started, monkeypatch
):
    original = answering.CachedClient.complete
    killed = []

    def complete(self, requests, on_result=None):
        def kill_once(result):
            if self.kind == "answer" and result.ok and not killed and started:
                killed.append(started[-1].proc.pid)
                os.killpg(started[-1].proc.pid, signal.SIGKILL)  # as an OOM kill would
            if on_result:
                on_result(result)

        return original(self, requests, kill_once)

    monkeypatch.setattr(answering.CachedClient, "complete", complete)
    meta = run_mt_bench(_config(tiny_model, shared_data, tmp_path / "out"))
    assert killed and meta["engine_starts"] == 2  # started, died, restarted once
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    reuse = metrics["answers"]["candidate"]
    assert reuse["cached"] >= 1  # what was answered before the crash was not asked again
    rows = [json.loads(line) for line in (tmp_path / "out" / "model_answer" / "candidate.jsonl").open()]
    assert all("$ERROR$" not in r["choices"][0]["turns"] for r in rows)


def test_a_server_that_dies_for_good_fails_the_stage_with_its_last_log_lines(
    tiny_model, shared_data, tmp_path, started, monkeypatch
):
    original = answering.CachedClient.complete

    def complete(self, requests, on_result=None):
        if self.kind == "answer" and started and started[-1].alive():
            os.killpg(started[-1].proc.pid, signal.SIGKILL)
        return original(self, requests, on_result)

    monkeypatch.setattr(answering.CachedClient, "complete", complete)
    engine = EngineConfig(kind="llamacpp", parallel=2, threads=1, restarts=0)
    with pytest.raises(UserError) as err:
        run_mt_bench(_config(tiny_model, shared_data, tmp_path / "out", engine=engine))
    text = str(err.value)
    assert "llama.cpp server for 'candidate'" in text and "exited with code -9 while answering" in text
    assert (
        "last log lines" in text and "llama" in text.split("last log lines", 1)[1]
    )  # the server's own words
    assert not (tmp_path / "out").exists()


def test_a_server_that_cannot_start_is_a_user_error_with_its_log(tiny_model, tmp_path, started):
    (tmp_path / "candidate.gguf").write_bytes(b"GGUF" + b"\0" * 64)  # a broken export
    engine = EngineConfig(kind="llamacpp", parallel=1, threads=1, startup_timeout_s=300)
    with pytest.raises(UserError) as err:
        with serve_model(str(tiny_model), engine, label="candidate", workdir=tmp_path, max_new_tokens=16):
            pass
    assert "exited with code" in str(err.value) and "before it was ready" in str(err.value)
    assert str(tmp_path / "candidate-llamacpp.log") in str(err.value)
    assert len(started) == 1


def test_a_context_too_small_for_the_answers_is_refused_before_anything_starts(
    tiny_model, shared_data, tmp_path, started
):
    engine = EngineConfig(kind="llamacpp", context=512, parallel=1, threads=1)
    with pytest.raises(
        UserError, match=r"context \(512 tokens\) is too small for MT-Bench with max_new_tokens=1024"
    ):
        run_mt_bench(_config(tiny_model, shared_data, tmp_path / "out", engine=engine, max_new_tokens=1024))
    engine = EngineConfig(kind="llamacpp", context=100_000, parallel=1, threads=1)
    with pytest.raises(UserError, match=r"more than the model's own context \(8192"):
        run_mt_bench(_config(tiny_model, shared_data, tmp_path / "out", engine=engine))
    assert started == [] and not server_process._LIVE


def _server_children(pid: int) -> list[int]:
    """The llama.cpp server processes started by process `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"labpipe.models.llamacpp_server" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # exited (a zombie waits for its new parent to reap it)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_killing_the_evaluation_stops_its_server(tiny_model, shared_data, tmp_path, signum):
    """`labpipe evaluate mt-bench --engine llamacpp` killed while its server runs: SIGTERM stops the server
    (signal handler), SIGKILL too (the server dies with its parent: PR_SET_PDEATHSIG)."""
    pytest.importorskip("xllamacpp", reason="pip install xllamacpp (scripts/setup-env.sh installs it)")
    cmd = [sys.executable, "-m", "labpipe.cli", "evaluate", "mt-bench", "--model", str(tiny_model)]
    cmd += ["--judge", str(tiny_model), "--questions", str(shared_data / "mt_bench"), "--max-questions", "40"]
    cmd += ["--max-new-tokens", "256", "--engine", "llamacpp", "--out", str(tmp_path / "out")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        servers: list[int] = []
        while not servers and proc.poll() is None and time.monotonic() < deadline:
            servers = _server_children(proc.pid)
            time.sleep(0.2)
        assert servers, f"no server was started: {proc.stderr.read().decode()[-2000:] if proc.poll() else ''}"
        time.sleep(1)  # let it load and take requests
        os.kill(proc.pid, signum)
        proc.wait(timeout=120)
        deadline = time.monotonic() + 60
        while not all(_gone(pid) for pid in servers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(_gone(pid) for pid in servers), f"server {servers} still running after {signum!r}"
        assert proc.returncode == -signum
        assert not (tmp_path / "out").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_best_checkpoint_at_size_one_engine_per_checkpoint_one_after_another(
    tiny_model, base_model, shared_data, tmp_path, started, monkeypatch
):
    """checkpoint_selection=best with a server engine: each checkpoint gets its own server, started only after
    the previous one stopped (the same GPUs, one at a time); the winner's answers against the base are the
    ones it gave while being scored (cache), so the candidate run starts nothing more. The cost figure is
    in the metrics."""
    import shutil

    from labpipe.evaluation.candidate import CandidateEvalConfig, evaluate_candidate
    from labpipe.models.tiny import TinyModelConfig, build_tiny_model

    out = tmp_path / "skills-out"
    shutil.copytree(tiny_model, out / "checkpoints" / "checkpoint-2")
    build_tiny_model(out / "checkpoints" / "checkpoint-4", TinyModelConfig(seed=2))
    build_tiny_model(out / "model", TinyModelConfig(seed=3))
    overlap = []
    original = ServerProcess.start

    def start(self, timeout_s):
        overlap.append(sum(s.alive() for s in started if s is not self))
        return original(self, timeout_s)

    monkeypatch.setattr(ServerProcess, "start", start)
    result = evaluate_candidate(
        CandidateEvalConfig(
            training_out=str(out),
            decision_out=str(tmp_path / "decision.json"),
            base_model=str(base_model),
            judge=ClientOptions(endpoint=str(tiny_model)),
            questions=str(shared_data / "mt_bench"),
            max_questions=2,
            max_new_tokens=8,
            checkpoint_selection="best",
            engine="llamacpp",
            cache=str(tmp_path / "cache"),
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        )
    )
    labels = [s.what.split("'")[1] for s in started]
    assert labels == ["checkpoint-2", "checkpoint-4", "model", "base"]
    assert overlap == [0, 0, 0, 0]  # never two servers at once
    m = result.metrics
    assert m["selection.engine_starts"] == 3 and m["selection.answers_sent"] == 3 * 4  # 2 questions x 2 turns
    assert (
        m["engine_starts"] == 1 and m["answers_sent"] == 4
    )  # the base only: the winner's answers are reused


def test_vllm_engine_answers_through_vllms_own_server(tmp_path, shared_data, started, monkeypatch):
    """The `vllm` engine for real, where vLLM's CPU build is installed (scripts/setup-vllm.sh, then
    LABPIPE_VLLM_PYTHON): the command labpipe builds starts vLLM, /health then /v1/models make it ready, the
    answers come back, the server is stopped. A tiny model with head_dim 64 (vLLM's CPU attention needs it)."""
    python = os.environ.get("LABPIPE_VLLM_PYTHON", "")
    if not python or not Path(python).exists():
        pytest.skip("vLLM's CPU build is optional: run scripts/setup-vllm.sh, then set LABPIPE_VLLM_PYTHON")
    from labpipe.models.tiny import TinyModelConfig, build_tiny_model

    model = build_tiny_model(
        tmp_path / "tiny-hd64",
        TinyModelConfig(hidden_size=128, intermediate_size=256, num_attention_heads=2, num_key_value_heads=2),
    )
    engine = EngineConfig(
        kind="vllm",
        context=1024,
        startup_timeout_s=900,
        extra_args=["--dtype", "float32", "--no-enable-chunked-prefill"],
    )
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of CPU KV cache
    meta = run_mt_bench(
        _config(
            model,
            shared_data,
            tmp_path / "out",
            judge=ClientOptions(str(model), concurrency=2, max_retries=1),
            engine=engine,
            max_questions=1,
            max_new_tokens=16,
        )
    )
    assert [s.what for s in started] == ["vLLM server for 'candidate' (tensor parallel 1)"]
    assert meta["engine_starts"] == 1 and meta["answers_sent"] == 2
    rows = [json.loads(line) for line in (tmp_path / "out" / "model_answer" / "candidate.jsonl").open()]
    assert all("$ERROR$" not in r["choices"][0]["turns"] for r in rows)
