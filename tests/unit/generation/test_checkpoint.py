"""Checkpoints: appended per call, torn lines survived, reruns send only what is missing."""

from __future__ import annotations

import json

import pytest

from labpipe.generation.checkpoint import CallStats, Checkpoint, complete
from labpipe.generation.stage import GENERATED, MANIFEST, GenerationConfig, run_generation
from labpipe.llm.options import ClientOptions
from labpipe.llm.types import ChatRequest, ChatResult
from tests.support.chat import user_request
from tests.unit.critique.fixtures import SEEDS, ScriptedClient


def _requests(n: int) -> list[tuple[str, ChatRequest]]:
    return [
        (f"leaf/{i % 2}", user_request(str(i), f"r{i}"))
        for i in range(n)
    ]


def test_each_result_is_on_disk_as_soon_as_it_is_reported(tmp_path):
    seen_on_disk = []

    class Peek(ScriptedClient):
        def complete(self, requests, on_result=None):
            def spy(result):
                on_result(result)
                seen_on_disk.append(
                    sum(len(p.read_text().splitlines()) for p in (tmp_path / "ck").glob("*.jsonl"))
                )

            return super().complete(requests, spy)

    with Checkpoint(tmp_path / "ck") as ck:
        complete(Peek(), _requests(4), ck, CallStats())
    assert seen_on_disk == [1, 2, 3, 4]
    assert len(list((tmp_path / "ck").glob("*.jsonl"))) == 2  # one file per leaf


def test_rerun_sends_only_missing_and_failed_requests(tmp_path):
    fail = {"r3"}
    client = ScriptedClient(lambda req: RuntimeError("HTTP 500") if req.request_id in fail else None)
    stats = CallStats()
    with Checkpoint(tmp_path) as ck:
        results = complete(client, _requests(5), ck, stats)
    assert not results["r3"].ok and stats.failed == 1 and stats.sent == 5
    client2, stats2 = ScriptedClient(), CallStats()
    with Checkpoint(tmp_path) as ck:
        results2 = complete(client2, _requests(7), ck, stats2)
    assert [r.request_id for r in client2.requests] == ["r3", "r5", "r6"]
    assert stats2.cached == 4 and all(r.ok for r in results2.values())
    assert results2["r0"].text == results["r0"].text


def test_duplicate_request_ids_are_sent_once(tmp_path):
    client = ScriptedClient()
    with Checkpoint(tmp_path) as ck:
        complete(client, _requests(3) + _requests(3), ck, CallStats())
    assert len(client.requests) == 3


def test_torn_last_line_is_cut_before_appending(tmp_path):
    with Checkpoint(tmp_path) as ck:
        complete(ScriptedClient(), _requests(2), ck, CallStats())
    path = next(tmp_path.glob("*.jsonl"))
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"request_id": "r9", "text": "half a li')  # kill -9 mid-write
    with Checkpoint(tmp_path) as ck:
        assert ck.get("r9") is None and len(ck) == 2
        ck.record("leaf/0", ChatResult("r8", text="new"))
    lines = [json.loads(line) for p in tmp_path.glob("*.jsonl") for line in p.read_text().splitlines()]
    assert {row["request_id"] for row in lines} == {"r0", "r1", "r8"}


def test_generation_interrupted_midway_resumes_without_resending(tmp_path):
    """A teacher that dies after 15 calls: the rerun sends exactly the calls that never completed."""

    class Dies(ScriptedClient):
        def complete(self, requests, on_result=None):
            for req in requests:
                if len(self.requests) == 15:
                    raise KeyboardInterrupt
                super().complete([req], on_result)
            return []

    config = GenerationConfig(
        seeds=str(SEEDS),
        out=str(tmp_path),
        teacher=ClientOptions(endpoint="http://x/v1"),
        progress=False,
        fan_out_scale=0.3,
    )
    with pytest.raises(KeyboardInterrupt):
        run_generation(config, client=Dies())
    assert not (tmp_path / GENERATED).exists() and not (tmp_path / MANIFEST).exists()
    rerun = ScriptedClient()
    meta = run_generation(config, client=rerun)
    full = ScriptedClient()
    reference = run_generation(  # no shared cache: the reference pays for every request
        GenerationConfig(**{**config.__dict__, "out": str(tmp_path / "ref"), "generation_cache": "off"}),
        client=full,
    )
    assert meta["requests_cached"] == 15 and meta["requests_sent"] == len(full.requests) - 15
    assert not {r.request_id for r in rerun.requests} & {r.request_id for r in full.requests[:15]}
    assert (tmp_path / GENERATED).read_text() == (tmp_path / "ref" / GENERATED).read_text()
    assert reference["records"] == meta["records"] > 0
