"""The shared generation cache on a local directory: keys, write-once entries, corrupt entries,
reuse across fresh output directories (the S3 backend and its faults: tests/integration)."""

from __future__ import annotations

import json
from dataclasses import replace

from labpipe.generation.checkpoint import CallStats, Checkpoint, complete
from labpipe.generation.stage import CHECKPOINTS, GENERATED, GenerationConfig, run_generation
from labpipe.llm.cache import GenerationCache, cache_key, decode_entry, encode_entry, open_cache
from labpipe.llm.options import ClientOptions
from labpipe.llm.types import ChatRequest, ChatResult
from tests.support.chat import user_request
from tests.unit.critique.fixtures import SEEDS, ScriptedClient


def _requests(n: int, prefix: str = "q") -> list[tuple[str, ChatRequest]]:
    return [
        (
            f"leaf/{i % 3}",
            user_request(f"{prefix}{i}", f"r{prefix}{i}"),
        )
        for i in range(n)
    ]


def _entries(cache: GenerationCache) -> list:
    return sorted(p for p in cache.store.root.rglob("*.json"))


def test_key_covers_everything_that_determines_a_reply():
    req = user_request("hi", "r1", schema={"type": "object"})
    key = cache_key(req, "model:a")
    assert key == cache_key(replace(req), "model:a")  # same content, same key
    variants = [
        cache_key(req, "model:b"),  # another model
        cache_key(replace(req, messages=[{"role": "user", "content": "hi!"}]), "model:a"),
        cache_key(replace(req, request_id="r2"), "model:a"),  # flow/step/fan-out index live in the id
        cache_key(replace(req, temperature=0.7), "model:a"),
        cache_key(replace(req, max_tokens=100), "model:a"),
        cache_key(replace(req, seed=3), "model:a"),
        cache_key(replace(req, schema={"type": "object", "required": ["x"]}), "model:a"),
    ]
    assert len({key, *variants}) == len(variants) + 1


def test_entries_are_verified_and_written_once(tmp_path):
    cache = GenerationCache(str(tmp_path))
    first, second = ChatResult("r1", text="first"), ChatResult("r1", text="second")
    cache.put("k" * 64, "model:a", first)
    cache.put("k" * 64, "model:a", second)  # a concurrent writer lost the race: its reply is not stored
    assert cache.get_many(["k" * 64])["k" * 64].text == "first"
    assert cache.stats.writes == 1 and cache.stats.write_conflicts == 1
    assert len(_entries(cache)) == 1 and not list(tmp_path.rglob("*.tmp"))
    blob = encode_entry("k" * 64, "model:a", first)
    assert decode_entry("k" * 64, blob).text == "first"
    assert decode_entry("j" * 64, blob) is None  # an entry stored under another key
    assert decode_entry("k" * 64, blob[: len(blob) // 2]) is None  # truncated
    assert decode_entry("k" * 64, blob.replace(b"first", b"forst")) is None  # digest mismatch
    cache.put("f" * 64, "model:a", ChatResult("r2", error="HTTP 500"))  # failures are never cached
    assert len(_entries(cache)) == 1


def test_fresh_checkpoint_dir_reuses_the_cache_and_sends_nothing(tmp_path):
    cache = GenerationCache(str(tmp_path / "cache"))
    client = ScriptedClient()
    with Checkpoint(tmp_path / "run1", cache=cache) as ck:
        first = complete(client, _requests(6), ck, CallStats())
    assert len(client.requests) == 6 and len(_entries(cache)) == 6
    again, stats = ScriptedClient(), CallStats()
    with Checkpoint(tmp_path / "run2", cache=cache) as ck:  # a retried pod: fresh out dir, same cache
        results = complete(again, _requests(8), ck, stats)
    assert [r.request_id for r in again.requests] == ["rq6", "rq7"]
    assert stats.sent == 2 and stats.cached == 6 and stats.cache_hits == 6
    assert all(results[rid].text == first[rid].text for rid in first)
    # the hits are checkpointed in the new directory too: it is the full record of its replies
    lines = [json.loads(x) for p in (tmp_path / "run2").glob("*.jsonl") for x in p.read_text().splitlines()]
    assert len(lines) == 8
    assert cache.stats.lookup_batches == 2  # one batch per complete() call, not one lookup per request


def test_another_model_misses_the_cache(tmp_path):
    cache = GenerationCache(str(tmp_path / "cache"))
    with Checkpoint(tmp_path / "a", cache=cache) as ck:
        complete(ScriptedClient(), _requests(3), ck, CallStats())
    other = ScriptedClient()
    other.model_name = "another-teacher"
    with Checkpoint(tmp_path / "b", cache=cache) as ck:
        complete(other, _requests(3), ck, CallStats())
    assert len(other.requests) == 3 and len(_entries(cache)) == 6


def test_corrupt_entry_is_re_requested_and_replaced(tmp_path):
    cache = GenerationCache(str(tmp_path / "cache"))
    with Checkpoint(tmp_path / "a", cache=cache) as ck:
        complete(ScriptedClient(), _requests(4), ck, CallStats())
    tampered, truncated = _entries(cache)[:2]
    tampered.write_text(tampered.read_text().replace("Synthetic", "Tampered"))
    truncated.write_bytes(truncated.read_bytes()[:40])
    client, stats = ScriptedClient(), CallStats()
    with Checkpoint(tmp_path / "b", cache=cache) as ck:
        results = complete(client, _requests(4), ck, stats)
    assert len(client.requests) == 2 and stats.cache_hits == 2 and cache.stats.corrupt == 2
    assert all("Tampered" not in r.text for r in results.values())
    fresh = GenerationCache(str(tmp_path / "cache"))  # the bad entries were replaced by the new replies
    assert len(fresh.get_many(json.loads(p.read_text())["key"] for p in _entries(cache))) == 4


def test_run_generation_in_a_fresh_out_dir_costs_no_request(tmp_path):
    config = GenerationConfig(
        seeds=str(SEEDS),
        out=str(tmp_path / "run1"),
        teacher=ClientOptions(endpoint="http://x/v1"),
        progress=False,
        fan_out_scale=0.3,
        generation_cache=str(tmp_path / "cache"),
    )
    first_client = ScriptedClient()
    first = run_generation(config, client=first_client)
    assert first["requests_sent"] == len(first_client.requests) > 0 and first["requests_reused"] == 0
    second_client = ScriptedClient()
    second = run_generation(replace(config, out=str(tmp_path / "run2")), client=second_client)
    assert second_client.requests == [] and second["requests_sent"] == 0
    assert second["requests_reused"] == second["cache_hits"] == first["requests_sent"]
    assert (tmp_path / "run2" / GENERATED).read_text() == (tmp_path / "run1" / GENERATED).read_text()
    assert list((tmp_path / "run2" / CHECKPOINTS).glob("*.jsonl"))
    # "off": no shared cache, every request is paid for again
    third_client = ScriptedClient()
    third = run_generation(
        replace(config, out=str(tmp_path / "run3"), generation_cache="off"), client=third_client
    )
    assert third["requests_sent"] == first["requests_sent"] and third["cache_hits"] == 0


def test_default_location_is_under_labpipe_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LABPIPE_CACHE", str(tmp_path / "lc"))
    assert open_cache("").uri == str(tmp_path / "lc" / "generation")
    assert open_cache("off") is None


def test_model_identity_endpoint_name_or_local_model_files(tmp_path):
    from types import SimpleNamespace

    from labpipe.llm.cache import model_identity
    from labpipe.llm.types import ModelSpec

    named = SimpleNamespace(spec=ModelSpec("http://a:8000/v1", model="granite"), model_name="unused")
    other_url = SimpleNamespace(spec=ModelSpec("http://b:9000/v1", model="granite"), model_name="unused")
    assert model_identity(named) == model_identity(other_url) == "model:granite"  # the URL is not the model
    discovered = SimpleNamespace(spec=ModelSpec("http://a:8000/v1"), model_name="granite")
    assert model_identity(discovered) == "model:granite"
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"weights v1")
    local = SimpleNamespace(spec=ModelSpec(str(model_dir)), model_name="model")
    before = model_identity(local)
    assert before.startswith("hf:model@")
    (model_dir / "model.safetensors").write_bytes(b"weights v2, retrained")
    assert model_identity(local) != before  # retrained in place: a new identity, no stale replies
    (model_dir / "model.safetensors").write_bytes(b"weights v3, same size")
    assert model_identity(local) != before


def test_model_identity_holds_no_file_time_and_no_parent_path(tmp_path, tiny_model):
    """Issue 20, item 3: `labpipe run` rebuilt the tiny model each time and its new mtime changed the cache key,
    so a rerun after Ctrl-C resent every teacher request. The same files (rebuilt elsewhere, copied, touched)
    are the same model."""
    import os
    import shutil
    from types import SimpleNamespace

    from labpipe.llm.cache import model_identity
    from labpipe.llm.types import ModelSpec
    from labpipe.models.tiny import build_tiny_model

    def identity(path):
        return model_identity(SimpleNamespace(spec=ModelSpec(str(path)), model_name="tiny"))

    rebuilt = build_tiny_model(tmp_path / "run2" / "tiny")
    copied = shutil.copytree(tiny_model, tmp_path / "copy" / "tiny")
    for f in copied.iterdir():
        os.utime(f, (1, 1))
    assert identity(tiny_model) == identity(rebuilt) == identity(copied)
