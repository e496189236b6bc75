"""The reply cache knows which model answered: two real llama.cpp servers (xllamacpp) serving different
models under one name (`teacher`, as our KServe manifests name every teacher) share no reply, while a
replica of the same model reuses every reply the first one paid for.

What tells the models apart is what llama.cpp's GET /v1/models reports about the model behind the name
(`meta`: n_params, size, n_vocab, n_embd, n_ctx_train; not the per-slot n_ctx, which replicas may differ in).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labpipe.generation.stage import GenerationConfig, run_generation
from labpipe.llm.cache import model_identity
from labpipe.llm.client import make_client
from labpipe.llm.options import ClientOptions
from labpipe.llm.types import ModelSpec
from tests.unit.critique.fixtures import SEEDS

from .conftest import llamacpp_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def other_gguf(tmp_path_factory) -> Path:
    """A different tiny model: other weights and one more layer (what a swapped teacher is)."""
    pytest.importorskip("gguf")
    from labpipe.models.gguf_export import export_gguf
    from labpipe.models.tiny import TinyModelConfig, build_tiny_model

    work = tmp_path_factory.mktemp("other")
    return export_gguf(
        build_tiny_model(work / "other", TinyModelConfig(seed=1, num_hidden_layers=3)), work / "o.gguf"
    )


def _generate(url: str, out: Path, cache: Path) -> dict:
    config = GenerationConfig(seeds=str(SEEDS), out=str(out),
                              teacher=ClientOptions(endpoint=url, model="teacher", concurrency=2),
                              fan_out_scale=0.1, gate=False, progress=False,
                              max_failed_share=1.0, generation_cache=str(cache))  # fmt: skip
    return run_generation(config)


def test_a_swapped_model_under_the_same_name_never_replays_the_old_replies(tiny_gguf, other_gguf, tmp_path):
    cache = tmp_path / "cache"
    first = llamacpp_server(tiny_gguf, tmp_path, alias="teacher", parallel=2).start()
    try:
        paid = _generate(first.base_url, tmp_path / "a", cache)
        assert paid["requests_sent"] > 0
        stored = paid["requests_sent"] - paid["requests_failed"]
        assert stored > 0
    finally:
        first.stop()

    swapped = llamacpp_server(other_gguf, tmp_path, alias="teacher").start()
    try:
        other = _generate(swapped.base_url, tmp_path / "b", cache)
        client = make_client(ModelSpec(swapped.base_url, model="teacher"))
        assert client.model_name == "teacher"  # the same name ...
        assert client.served_identity()["meta"]["n_params"] > 0  # ... another model
    finally:
        swapped.stop()
    assert other["requests_reused"] == 0 and other["requests_sent"] > 0  # nothing of the first model's

    replica = llamacpp_server(
        tiny_gguf, tmp_path, alias="teacher", parallel=4
    ).start()  # other slots, same model
    try:
        again = _generate(replica.base_url, tmp_path / "c", cache)
    finally:
        replica.stop()
    assert again["requests_reused"] >= stored and again["requests_sent"] <= paid["requests_failed"]


def test_an_explicit_revision_separates_models_a_server_does_not_describe(llamacpp):
    base = make_client(ModelSpec(llamacpp.base_url, model="tiny"))
    rev1 = make_client(ModelSpec(llamacpp.base_url, model="tiny", revision="sha256:1111"))
    rev2 = make_client(ModelSpec(llamacpp.base_url, model="tiny", revision="sha256:2222"))
    ids = {model_identity(c) for c in (base, rev1, rev2)}
    assert len(ids) == 3 and all(i.startswith("model:tiny@") for i in ids)
    assert model_identity(make_client(ModelSpec(llamacpp.base_url, model="tiny"))) == model_identity(base)
