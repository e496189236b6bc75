"""The shared generation cache over real HTTP: the fake OpenAI-compatible teacher/judge
(tests.support.fake_openai, whose request log counts what was paid for) and a moto S3 server.

Faults: a tampered S3 entry is re-requested; S3 errors are retried (injected botocore errors) or,
with S3 gone mid-run, end in one UserError with no output and no half-written entry; a `labpipe
generate` killed with SIGKILL and rerun in a *fresh* out dir with the same cache resends nothing
that was answered.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
from mlflow.tracking import MlflowClient

from labpipe.critique.stage import CritiqueConfig, run_critique
from labpipe.errors import UserError
from labpipe.generation.stage import GENERATED, GenerationConfig, run_generation
from labpipe.llm.cache import GenerationCache, decode_entry
from labpipe.llm.options import ClientOptions
from tests.support.fake_openai import FakeOpenAIServer, FaultPlan
from tests.unit.critique.fixtures import SEEDS

pytestmark = pytest.mark.integration


def _gen(server, out, cache: str, model: str = "", **kw) -> GenerationConfig:
    return GenerationConfig(
        seeds=str(SEEDS),
        out=str(out),
        # response_format json_schema: no structured-output probe: the fake's request counts are the cache's
        teacher=ClientOptions(endpoint=server.base_url, model=model, concurrency=8, response_format="json_schema"),
        progress=False,
        fan_out_scale=0.3,
        gate=False,
        generation_cache=cache,
        **kw,
    )


def _bucket(name: str) -> str:
    client = boto3.client("s3")
    try:
        client.create_bucket(Bucket=name)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    return name


def _objects(bucket: str, prefix: str = "") -> dict[str, bytes]:
    client = boto3.client("s3")
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def _intact(blobs: dict[str, bytes]) -> bool:
    return all(decode_entry(Path(k).stem, v) is not None for k, v in blobs.items())


def _stage_metrics(tracking: str) -> dict[str, list[dict]]:
    client = MlflowClient(tracking_uri=tracking)
    runs = client.search_runs([client.get_experiment_by_name("labpipe").experiment_id])
    by_stage: dict[str, list[dict]] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time):
        if run.data.tags.get("labpipe.role") == "stage":
            by_stage.setdefault(run.data.tags["labpipe.stage"], []).append(run.data.metrics)
    return by_stage


def test_s3_cache_shared_by_runs_in_fresh_dirs_for_teacher_and_judge(s3_env, tmp_path):
    """Run 2 (fresh out dirs, same s3:// cache) sends no teacher and no judge request; both stages
    report requests_sent / requests_reused in their metadata and MLflow metrics; lookups are batched
    and parallel."""
    uri = f"s3://{_bucket('gen-cache-shared')}/weekly/cache"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    metas = []
    with FakeOpenAIServer() as server:
        for run in ("run1", "run2"):
            server.reset_counters()
            gen = run_generation(_gen(server, tmp_path / run / "gen", uri, run_id=run, tracking_uri=tracking))
            teacher_requests = server.total_requests
            crit = run_critique(
                CritiqueConfig(
                    generated=str(tmp_path / run / "gen"),
                    out=str(tmp_path / run / "crit"),
                    judge=ClientOptions(endpoint=server.base_url, response_format="json_schema"),
                    profile="smoke",
                    generation_cache=uri,
                    run_id=run,
                    tracking_uri=tracking,
                )
            )
            metas.append((gen, crit, teacher_requests, server.total_requests - teacher_requests))
    (gen1, crit1, teacher1, judge1), (gen2, crit2, teacher2, judge2) = metas
    assert teacher1 == gen1["requests_sent"] > 0 and judge1 == crit1["requests_sent"] > 0
    assert teacher2 == 0 and judge2 == 0  # counted by the server, not by the stage
    assert gen2["requests_sent"] == 0 and gen2["requests_reused"] == gen1["requests_sent"]
    assert crit2["requests_sent"] == 0 and crit2["requests_reused"] == crit1["requests_sent"]
    assert (tmp_path / "run2/gen" / GENERATED).read_text() == (tmp_path / "run1/gen" / GENERATED).read_text()
    assert (tmp_path / "run2/crit/skills_train.jsonl").read_text() == (
        tmp_path / "run1/crit/skills_train.jsonl"
    ).read_text()
    entries = _objects("gen-cache-shared", "weekly/cache/")
    assert len(entries) == gen1["requests_sent"] + crit1["requests_sent"] and _intact(entries)
    metrics = _stage_metrics(tracking)
    for stage, first, second in (
        ("synthetic_generation", gen1, gen2),
        ("critique_filter", crit1, crit2),
    ):
        logged = [(m["requests_sent"], m["requests_reused"]) for m in metrics[stage]]
        assert logged == [
            (first["requests_sent"], first["requests_reused"]),
            (second["requests_sent"], second["requests_reused"]),
        ]


def test_s3_lookups_are_one_parallel_batch_per_step(s3_env, tmp_path):
    uri = f"s3://{_bucket('gen-cache-batch')}/c"
    cache = GenerationCache(uri)
    threads: set[int] = set()
    calls = {"GetObject": 0}

    def seen(**kwargs):
        threads.add(threading.get_ident())
        calls["GetObject"] += 1

    cache.store.client.meta.events.register("before-call.s3.GetObject", seen)
    with FakeOpenAIServer() as server:  # step by step: every request of a depth is known at once
        meta = run_generation(_gen(server, tmp_path / "gen", uri, stream=False), cache=cache)
    steps = max(len(s["steps"]) for s in json.loads((tmp_path / "gen/manifest.json").read_text())["per_leaf"].values())
    assert cache.stats.lookup_batches <= steps  # one batch per depth, not one per request
    assert cache.stats.lookups == calls["GetObject"] == meta["requests_sent"]
    assert len(threads) > 1  # the GETs of a batch ran on a pool of threads

    # streamed: the first step's requests are one batch; a follow-up is looked up when its reply is in
    streamed = GenerationCache(f"{uri}-streamed")
    with FakeOpenAIServer() as server:
        meta = run_generation(_gen(server, tmp_path / "streamed", f"{uri}-streamed", stream=True), cache=streamed)
    assert streamed.stats.lookups == meta["requests_sent"] and streamed.stats.hits == 0
    assert streamed.stats.lookup_batches < streamed.stats.lookups  # the first step's requests came in one batch
    with FakeOpenAIServer() as server:  # and a rerun in a fresh directory is served from the cache
        again = run_generation(_gen(server, tmp_path / "streamed-2", f"{uri}-streamed", stream=True), cache=streamed)
        assert server.total_requests == 0
    assert again["requests_sent"] == 0 and again["cache_hits"] == meta["requests_sent"]


def test_tampered_s3_entry_is_re_requested_and_replaced(s3_env, tmp_path):
    uri = f"s3://{_bucket('gen-cache-digest')}/c"
    with FakeOpenAIServer() as server:
        first = run_generation(_gen(server, tmp_path / "a", uri))
        client = boto3.client("s3")
        key = sorted(_objects("gen-cache-digest", "c/"))[0]
        body = json.loads(client.get_object(Bucket="gen-cache-digest", Key=key)["Body"].read())
        body["result"]["text"] = body["result"]["text"][:-3] + "zzz"  # digest no longer matches
        client.put_object(Bucket="gen-cache-digest", Key=key, Body=json.dumps(body).encode())
        server.reset_counters()
        second = run_generation(_gen(server, tmp_path / "b", uri))
        assert server.total_requests == 1 and second["requests_sent"] == 1
    assert second["cache_corrupt"] == 1 and second["requests_reused"] == first["requests_sent"] - 1
    assert (tmp_path / "b" / GENERATED).read_text() == (tmp_path / "a" / GENERATED).read_text()
    assert _intact(_objects("gen-cache-digest", "c/"))  # the tampered entry was replaced


def test_injected_s3_errors_are_retried(s3_env, tmp_path):
    from botocore.exceptions import EndpointConnectionError

    uri = f"s3://{_bucket('gen-cache-retry')}/c"
    cache = GenerationCache(uri, max_attempts=4)
    failures = {"left": 6}

    def flaky(request, **kwargs):
        if failures["left"] > 0:
            failures["left"] -= 1
            raise EndpointConnectionError(endpoint_url=request.url)

    cache.store.client.meta.events.register("before-send.s3.PutObject", flaky)
    with FakeOpenAIServer() as server:
        meta = run_generation(_gen(server, tmp_path / "gen", uri), cache=cache)
        assert server.total_requests == meta["requests_sent"]
    entries = _objects("gen-cache-retry", "c/")
    assert failures["left"] == 0 and len(entries) == meta["requests_sent"] and _intact(entries)


def test_s3_gone_mid_run_is_a_clear_error_with_nothing_half_written(s3_env, tmp_path):
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint  # s3_env restores it after the test
    _bucket("gen-cache-outage")
    uri = "s3://gen-cache-outage/c"
    stopped = threading.Event()

    def stop_s3_after_some_replies(request, attempt):
        with lock:
            seen[0] += 1
            if seen[0] == 10 and not stopped.is_set():
                moto.stop()
                moto._server.server_close()  # refuse connections, as a dead endpoint does
                stopped.set()
        return None

    lock, seen = threading.Lock(), [0]
    with FakeOpenAIServer(faults=FaultPlan(hook=stop_s3_after_some_replies)) as server:
        with pytest.raises(UserError) as err:
            run_generation(_gen(server, tmp_path / "gen", uri), cache=GenerationCache(uri, max_attempts=2))
    assert stopped.is_set()
    message = str(err.value)
    assert "generation cache" in message and uri in message and "generation_cache" in message
    assert not (tmp_path / "gen" / GENERATED).exists()
    # the object store's state (moto keeps it in-process): every entry present is complete and intact
    restarted = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    restarted.start()
    try:
        entries = _objects("gen-cache-outage", "c/")
        assert 0 < len(entries) < server.total_requests and _intact(entries)
    finally:
        restarted.stop()


def _valid_entries(cache_dir: Path) -> int:
    return sum(1 for p in cache_dir.rglob("*.json") if decode_entry(p.stem, p.read_bytes()) is not None)


def test_kill_9_then_fresh_out_dir_with_same_cache_resends_nothing_answered(tmp_path):
    cache_dir = tmp_path / "cache"
    with FakeOpenAIServer(latency_s=0.02) as server:
        total = run_generation(_gen(server, tmp_path / "ref", "off"))["requests_sent"]
        server.reset_counters()
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "labpipe.cli", "generate", "--seeds", str(SEEDS),
                "--out", str(tmp_path / "killed"), "--teacher", server.base_url, "--concurrency", "4",
                "--fan-out-scale", "0.3", "--no-gate", "--quiet", "--cache", str(cache_dir),
                "--response-format", "json_schema",  # no probe: the request log is the flows' requests
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _valid_entries(cache_dir) < total // 2:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        answered = _valid_entries(cache_dir)
        first_log = [json.dumps(r, sort_keys=True) for r in server.requests]
        assert 0 < answered < total and not (tmp_path / "killed" / GENERATED).exists()
        server.reset_counters()
        rerun = run_generation(_gen(server, tmp_path / "fresh", str(cache_dir)))
        second_log = [json.dumps(r, sort_keys=True) for r in server.requests]
    assert rerun["requests_reused"] == rerun["cache_hits"] == answered
    assert len(second_log) == rerun["requests_sent"] == total - answered
    # only requests in flight at the kill (concurrency 4) are sent twice; nothing answered is
    assert len(set(first_log) & set(second_log)) <= 4
    assert (tmp_path / "fresh" / GENERATED).read_text() == (tmp_path / "ref" / GENERATED).read_text()


def test_a_fully_cached_rerun_needs_no_teacher_when_the_model_is_named(tmp_path):
    cache = str(tmp_path / "cache")
    with FakeOpenAIServer() as server:
        first = run_generation(_gen(server, tmp_path / "a", cache, model=server.model))
        url = server.base_url
    # the teacher is gone: every reply comes from the cache, nothing is sent, nothing fails
    config = GenerationConfig(
        seeds=str(SEEDS), out=str(tmp_path / "b"), teacher=ClientOptions(endpoint=url, model="fake-teacher"),
        progress=False, fan_out_scale=0.3, gate=False, generation_cache=cache,
    )
    again = run_generation(config)
    assert again["requests_sent"] == 0 and again["requests_reused"] == first["requests_sent"] > 0
    assert (tmp_path / "b" / GENERATED).read_text() == (tmp_path / "a" / GENERATED).read_text()


def test_concurrent_runs_share_one_cache_without_breaking_it(tmp_path):
    """Two `labpipe generate` processes at once on one cache: both outputs are right, every entry is
    intact, and together they pay for at most two full runs (less when one finds the other's replies)."""
    cache_dir = tmp_path / "cache"
    with FakeOpenAIServer(latency_s=0.01) as server:
        total = run_generation(_gen(server, tmp_path / "ref", "off"))["requests_sent"]
        server.reset_counters()
        procs = [
            subprocess.Popen(
                [
                    sys.executable, "-m", "labpipe.cli", "generate", "--seeds", str(SEEDS),
                    "--out", str(tmp_path / name), "--teacher", server.base_url, "--concurrency", "4",
                    "--fan-out-scale", "0.3", "--no-gate", "--quiet", "--cache", str(cache_dir),
                "--response-format", "json_schema",  # no probe: the request log is the flows' requests
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for name in ("a", "b")
        ]
        for proc in procs:
            assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()
        sent = server.total_requests
    reference = (tmp_path / "ref" / GENERATED).read_text()
    assert (tmp_path / "a" / GENERATED).read_text() == reference == (tmp_path / "b" / GENERATED).read_text()
    assert total <= sent <= 2 * total
    assert _valid_entries(cache_dir) == len(list(cache_dir.rglob("*.json"))) == total
    assert not list(cache_dir.rglob("*.tmp"))
