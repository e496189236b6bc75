"""Real OpenAI-compatible servers with the tiny model, one fixture each, on 127.0.0.1 with a free port:

- `llamacpp`: llama.cpp's server from the `xllamacpp` wheel, serving the tiny model converted to GGUF by
  `labpipe model to-gguf`; a `RealServer` that can be killed and restarted on the same port;
- `transformers_serve`: `transformers serve` (transformers[serving]) pinned to the tiny model directory;
- `vllm_server`: vLLM's CPU build from its own virtual environment (scripts/setup-vllm.sh), serving a tiny
  model with head_dim 64; run by `make test-servers` (which .ci/run calls).

Each is always stopped when its fixture ends. A server whose package is missing is skipped with the
install command in the reason; vLLM's fails instead where LABPIPE_REQUIRE_VLLM=1 (CI).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import RealServer, free_port

pytestmark = pytest.mark.integration


def _require(module: str, install: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed: {install} (scripts/setup-env.sh installs it)")


@pytest.fixture(scope="session")
def tiny_gguf(tiny_model, tmp_path_factory) -> Path:
    _require("gguf", "pip install gguf")
    from labpipe.models.gguf_export import export_gguf

    return export_gguf(tiny_model, tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def llamacpp_server(
    gguf: Path, workdir: Path, *, ctx: int = 2048, parallel: int = 2, alias: str = "tiny"
) -> RealServer:
    """llama.cpp's server listing the model as `alias` (llama-server --alias), the name the tests send."""
    _require("xllamacpp", "pip install xllamacpp")
    port = free_port()
    cmd = [sys.executable, "-m", "labpipe.models.llamacpp_server", "--model", str(gguf), "--port", str(port)]
    cmd += ["--ctx", str(ctx), "--parallel", str(parallel)] + (["--alias", alias] if alias else [])
    return RealServer("llama.cpp server", cmd, port, workdir / f"llamacpp-{port}.log", "/health")


@pytest.fixture
def llamacpp(tiny_gguf, tmp_path) -> Iterator[RealServer]:
    """llama.cpp's server with the tiny model: 2 slots of 1024 tokens."""
    server = llamacpp_server(tiny_gguf, tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def transformers_serve(tiny_model, tmp_path_factory) -> Iterator[RealServer]:
    """`transformers serve` pinned to the tiny model directory (requests must name that path)."""
    for module in ("fastapi", "uvicorn", "openai"):
        _require(module, "pip install 'transformers[serving]==5.23.0'")
    workdir = tmp_path_factory.mktemp("transformers-serve")
    port = free_port()
    cmd = [
        sys.executable,
        "-c",
        "from transformers.cli.transformers import main; main()",
        "serve",
        str(tiny_model),
    ]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(workdir / "hf"),
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    }
    server = RealServer("transformers serve", cmd, port, workdir / "serve.log", "/health", env=env)
    server.start(timeout=240)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory) -> Iterator[RealServer]:
    """vLLM's CPU build (its own virtual environment, scripts/setup-vllm.sh) serving a tiny model with
    head_dim 64 (vLLM's CPU attention needs it) as `tiny`, with a context of 1024 tokens; `server.model` is
    the model directory. Skipped unless LABPIPE_VLLM_PYTHON names that environment's python (`make
    test-servers` sets it); with LABPIPE_REQUIRE_VLLM=1 (CI) a missing one fails the tests instead."""
    python = os.environ.get("LABPIPE_VLLM_PYTHON", "")
    if not python or not Path(python).exists():
        reason = (
            f"vLLM's CPU build not found (LABPIPE_VLLM_PYTHON={python!r}): run `make test-servers`, or "
            "scripts/setup-vllm.sh and then LABPIPE_VLLM_PYTHON=.venv-vllm/bin/python"
        )
        if os.environ.get("LABPIPE_REQUIRE_VLLM") == "1":
            pytest.fail(f"LABPIPE_REQUIRE_VLLM=1: {reason}", pytrace=False)
        pytest.skip(reason)
    from labpipe.models.tiny import TinyModelConfig, build_tiny_model

    workdir = tmp_path_factory.mktemp("vllm")
    model = build_tiny_model(
        workdir / "tiny-hd64",
        TinyModelConfig(hidden_size=128, intermediate_size=256, num_attention_heads=2, num_key_value_heads=2),
    )
    port = free_port()
    cmd = [
        python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        "tiny",
    ]
    cmd += [
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        "1024",
        "--no-enable-chunked-prefill",
    ]
    cmd += ["--dtype", "float32", "--enforce-eager"]  # no torch.compile warm-up: starts ~15 s sooner
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "1"}
    server = RealServer("vLLM", cmd, port, workdir / "vllm.log", "/health", env=env)
    server.model = model
    server.start(timeout=420)
    try:
        yield server
    finally:
        server.stop()
