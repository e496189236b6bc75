"""Generation at scale, over real HTTP to the fake OpenAI-compatible teacher: streamed flows against the
step-by-step run, and several teacher endpoints with one killed half way (tests.support.fake_openai)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from labpipe.generation.stage import CHECKPOINTS, GENERATED, MANIFEST, GenerationConfig, run_generation
from labpipe.llm.client import make_client
from labpipe.llm.options import ClientOptions
from labpipe.llm.types import ChatRequest, ModelSpec
from tests.support.fake_openai import FakeOpenAIServer, FaultPlan
from tests.support.servers import free_port
from tests.unit.critique.fixtures import SEEDS

pytestmark = pytest.mark.integration


def _config(teacher: str, out: Path, **kw) -> GenerationConfig:
    # no shared generation cache: these tests compare what each run sends
    return GenerationConfig(
        seeds=str(SEEDS), out=str(out), teacher=ClientOptions(endpoint=teacher, concurrency=8), progress=False,
        generation_cache="off", **kw
    )


def _request_ids(out: Path) -> list[str]:
    return sorted(
        json.loads(line)["request_id"]
        for path in (out / CHECKPOINTS).glob("*.jsonl")
        for line in path.read_text().splitlines()
    )


def _step_of(body: dict) -> str:
    schema = body["response_format"]["json_schema"]["schema"]
    return ",".join(sorted(schema["properties"]))


@pytest.mark.parametrize("gate", [True, False])
def test_streamed_output_is_byte_identical_to_step_by_step(tmp_path, gate):
    # some faults, so failed and re-asked requests are part of what must come out the same; one fresh
    # server per run, as the fake draws faults per request and attempt
    spec = dict(concurrency=3, backoff_base_s=0.01, backoff_max_s=0.02, max_retries=1, schema_retries=0,
                response_format="json_schema")  # no probe request: the bodies are the flows'
    runs, bodies = {}, {}
    for name, stream in (("steps", False), ("stream", True)):
        faults = FaultPlan(rates={"schema_violation": 0.05, "server_error": 0.05}, seed=3)
        with FakeOpenAIServer(latency_s=0.005, faults=faults) as server:
            runs[name] = run_generation(
                _config(server.base_url, tmp_path / name, stream=stream, gate=gate, max_failed_share=1.0),
                client=make_client(ModelSpec(server.base_url, **spec)),
            )
            bodies[name] = list(server.requests)
    stepwise, streamed, step_bodies, stream_bodies = (
        runs["steps"],
        runs["stream"],
        bodies["steps"],
        bodies["stream"],
    )
    assert (tmp_path / "stream" / GENERATED).read_bytes() == (tmp_path / "steps" / GENERATED).read_bytes()
    assert (tmp_path / "stream" / GENERATED).read_text().count("\n") >= 5
    assert _request_ids(tmp_path / "stream") == _request_ids(tmp_path / "steps")
    for key in ("records", "requests_sent", "requests_failed", "prompt_tokens"):
        assert streamed[key] == stepwise[key], key
    per_leaf = [json.loads((tmp_path / d / MANIFEST).read_text())["per_leaf"] for d in ("stream", "steps")]
    assert per_leaf[0] == per_leaf[1]
    assert sorted(map(json.dumps, stream_bodies)) == sorted(map(json.dumps, step_bodies))
    # step by step, every first-step request precedes any later step's; streamed, they interleave
    # the three flows' first steps (freeform questions at 0.9; grounded questions, a second step, at 0.8)
    first = {("questions", 0.9), ("contexts", 0.9), ("pairs", 0.7)}

    def interleaved(bodies: list[dict]) -> bool:
        depth0 = [(_step_of(b), b["temperature"]) in first for b in bodies]
        return depth0.index(False) < len(depth0) - 1 - depth0[::-1].index(True)

    assert interleaved(stream_bodies) and not interleaved(step_bodies)


def test_streaming_client_keeps_its_connections_across_steps():
    """A follow-up returned by on_result is sent in the same run; results come back for all of them."""
    with FakeOpenAIServer() as server:
        client = make_client(ModelSpec(server.base_url, concurrency=4))
        chain = {
            f"r{i}": ChatRequest([{"role": "user", "content": f"q{i + 1}"}], f"r{i + 1}") for i in range(9)
        }
        results = client.complete(
            [ChatRequest([{"role": "user", "content": "q0"}], "r0")],
            on_result=lambda r: [chain[r.request_id]] if r.request_id in chain else None,
        )
    assert [r.request_id for r in results] == [f"r{i}" for i in range(10)]
    assert all(r.ok for r in results) and server.total_requests == 10


def _spawn_fake(port: int, latency: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_openai", "--port", str(port), "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == f"http://127.0.0.1:{port}/v1"
    return proc


def test_two_endpoints_one_killed_half_way_nothing_lost_or_duplicated(tmp_path):
    """Teacher B (a separate process) is SIGKILLed half way through a streamed run; later a server comes
    back on B's port. The run completes from A, the dead endpoint is tried again after its cooldown and
    gets work once it is back; the records equal a one-endpoint run's: 0 lost, 0 duplicated."""
    port_b = free_port()
    proc_b = _spawn_fake(port_b, 0.1)  # as slow as A: both share the work until B is killed
    url_b = f"http://127.0.0.1:{port_b}/v1"
    revived: list[FakeOpenAIServer] = []
    revive_lock = threading.Lock()
    try:
        with FakeOpenAIServer(latency_s=0.01) as reference_server:
            reference = run_generation(
                _config(reference_server.base_url, tmp_path / "ref", gate=False, fan_out_scale=3)
            )
        total = reference["requests_sent"]
        assert total >= 80

        def hook(_body, _attempt):  # runs in A's handler threads
            n = server_a.total_requests
            if n >= 10 and proc_b.poll() is None:
                proc_b.send_signal(signal.SIGKILL)
            with revive_lock:
                if n >= 25 and not revived:
                    revived.append(FakeOpenAIServer(latency_s=0.01, port=port_b).start())
            return None

        with FakeOpenAIServer(latency_s=0.1, faults=FaultPlan(hook=hook)) as server_a:
            spec = ModelSpec(
                f"{server_a.base_url},{url_b}",
                model=server_a.model,
                concurrency=4,
                backoff_base_s=0.01,
                backoff_max_s=0.05,
                endpoint_failures=2,
                endpoint_cooldown_s=0.1,
            )
            client = make_client(spec)
            meta = run_generation(
                _config(spec.target, tmp_path / "two", gate=False, fan_out_scale=3), client=client
            )
            pool = {e["url"]: e for e in client.pool.describe()}
    finally:
        if proc_b.poll() is None:
            proc_b.kill()
        proc_b.wait()
        for server in revived:
            server.close()
    assert meta["requests_failed"] == 0 and meta["records"] == reference["records"]
    assert (tmp_path / "two" / GENERATED).read_bytes() == (tmp_path / "ref" / GENERATED).read_bytes()
    ids = _request_ids(tmp_path / "two")
    assert len(ids) == len(set(ids)) == total  # every request once: none lost, none duplicated
    b = pool[url_b]
    assert b["outages"] >= 1 and b["failed"] >= 2, pool  # taken out of rotation...
    assert b["returns"] >= 1, pool  # ...tried again after its cooldown...
    assert revived and revived[0].total_requests > 0, pool  # ...and back in rotation once it answers


def test_least_in_flight_spreads_requests_over_equal_endpoints():
    with FakeOpenAIServer(latency_s=0.02) as a, FakeOpenAIServer(latency_s=0.02) as b:
        client = make_client(ModelSpec(f"{a.base_url},{b.base_url}", model=a.model, concurrency=8))
        requests = [ChatRequest([{"role": "user", "content": f"q{i}"}], f"r{i}") for i in range(80)]
        results = client.complete(requests)
    assert [r.request_id for r in results] == [f"r{i}" for i in range(80)] and all(r.ok for r in results)
    assert a.total_requests + b.total_requests == 80
    assert abs(a.total_requests - b.total_requests) <= 8  # each gets about half
    assert a.max_in_flight <= 5 and b.max_in_flight <= 5  # 8 in flight, split evenly


def test_endpoint_list_errors_are_user_errors():
    from labpipe.errors import UserError

    with pytest.raises(UserError, match="endpoint"):
        make_client(ModelSpec("http://a:1/v1,ftp://b/v1"))
    with pytest.raises(UserError, match="twice"):
        make_client(ModelSpec("http://a:1/v1,http://a:1/v1"))


def test_streamed_run_over_threaded_fake_is_thread_safe():
    """The fake's handler threads and the client's loop: results counted exactly once under load."""
    with FakeOpenAIServer(latency_s=0.001) as server:
        client = make_client(ModelSpec(server.base_url, concurrency=16))
        seen: list[str] = []
        lock = threading.Lock()

        def on_result(r):
            with lock:
                seen.append(r.request_id)
            n = int(r.request_id[1:])
            return (
                [ChatRequest([{"role": "user", "content": f"x{n + 100}"}], f"r{n + 100}")]
                if n < 100
                else None
            )

        client.complete(
            [ChatRequest([{"role": "user", "content": f"x{i}"}], f"r{i}") for i in range(100)], on_result
        )
    assert sorted(seen) == sorted({f"r{i}" for i in range(200)}) and server.total_requests == 200


def test_cli_shards_then_critique_of_all_shards_equals_one_run(tmp_path):
    """`labpipe generate --shard-plan P --shard i` per shard, `labpipe critique --in DIR DIR`: the same
    training sets as one unsharded generation (the knowledge leaf split over the shards by chunk)."""
    from labpipe.cli import main
    from labpipe.critique.stage import KNOWLEDGE_SET, SKILLS_SET
    from labpipe.generation.shards import make_plan

    records = [json.loads(line) for line in SEEDS.read_text().splitlines() if line.strip()]
    plan = make_plan(records, 50)  # more shards than leaves: the knowledge leaf is split too
    assert any(p["chunks"] is not None for s in plan["shards"] for p in s["parts"])  # a split leaf
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    common = ["--fan-out-scale", "0.3", "--concurrency", "4", "--quiet", "--no-gate", "--cache", "off"]
    with FakeOpenAIServer() as server:
        url = server.base_url
        assert (
            main(
                ["generate", "--seeds", str(SEEDS), "--out", str(tmp_path / "one"), "--teacher", url, *common]
            )
            == 0
        )
        shards = []
        for i in range(len(plan["shards"])):
            shards.append(str(tmp_path / f"shard{i}"))
            args = ["--shard-plan", str(tmp_path / "plan.json"), "--shard", str(i), "--timeout", "30"]
            assert (
                main(
                    ["generate", "--seeds", str(SEEDS), "--out", shards[-1], "--teacher", url, *common, *args]
                )
                == 0
            )
        for name, inputs in (("crit-one", [str(tmp_path / "one")]), ("crit-shards", shards)):
            crit = [
                "critique",
                "--in",
                *inputs,
                "--out",
                str(tmp_path / name),
                "--judge",
                url,
                "--profile",
                "smoke",
            ]
            assert main([*crit, "--max-retries", "2", "--schema-retries", "1"]) == 0
    for name in (KNOWLEDGE_SET, SKILLS_SET):
        one = (tmp_path / "crit-one" / name).read_bytes()
        assert one and one == (tmp_path / "crit-shards" / name).read_bytes(), name


def test_a_replica_down_at_the_start_is_skipped():
    port = free_port()  # nothing listens there
    with FakeOpenAIServer() as server:
        spec = ModelSpec(f"http://127.0.0.1:{port}/v1,{server.base_url}", concurrency=4, backoff_base_s=0.01)
        spec.max_retries = 1
        client = make_client(spec)
        results = client.complete(
            [ChatRequest([{"role": "user", "content": f"q{i}"}], f"r{i}") for i in range(30)]
        )
    assert all(r.ok for r in results) and server.total_requests == 30
    assert client.model_name == server.model
