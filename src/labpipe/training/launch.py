"""One process per device, on one node or several: how `labpipe train` runs itself N x G times.

`run_training` calls `launch_plan()`; when the plan has more than one process and this process is not already
a worker (torchrun sets LOCAL_RANK), it re-runs `labpipe train` under a launcher and waits:

- with GPUs: `accelerate launch --config_file <labpipe>/training/accelerate/fsdp.yaml` (the shipped FSDP
  configuration; accelerate turns it into the FSDP environment and starts torchrun);
- on CPU (tests, laptops): `python -m torch.distributed.run` with the gloo backend (accelerate's own multi-CPU
  launcher needs MPI; the trainer runs DDP on gloo when `use_cpu` is set, see stage.sft_config).

The node layout comes from the variables a Kubeflow Trainer v2 torch runtime (TrainJob) and torchrun's own
launcher read: PET_NNODES, PET_NODE_RANK, PET_MASTER_ADDR, PET_MASTER_PORT, PET_NPROC_PER_NODE. A PyTorchJob
(Training Operator v1) sets the same PET_* variables. On one pod `nproc_per_node` comes from the `gpus` setting.

Rank 0 alone writes checkpoints, uploads them to the durable location and writes the model (stage.py); every
rank takes part in saving (FSDP gathers a full state dict). Resume needs the same process count (one RNG state
per rank is restored).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from labpipe.errors import Problem, UserError

PET = ("PET_NNODES", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT", "PET_NPROC_PER_NODE")


@dataclass(frozen=True)
class LaunchPlan:
    nnodes: int = 1
    nproc_per_node: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node


def in_worker(env: dict[str, str] | None = None) -> bool:
    """True inside a process started by torchrun / accelerate (it sets LOCAL_RANK)."""
    return "LOCAL_RANK" in (os.environ if env is None else env)


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise UserError(
            Problem(
                where=f"environment {name}",
                rule="launch",
                field=name,
                message=f"{raw!r} is not a whole number",
                fix=f"set {name} to a whole number (the TrainJob's torch runtime sets it)",
            )
        ) from None


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def launch_plan(nproc_per_node: int = 0, env: dict[str, str] | None = None) -> LaunchPlan:
    """The layout for this node: `nproc_per_node` (> 0) wins over PET_NPROC_PER_NODE ("auto": one per GPU)."""
    env = dict(os.environ if env is None else env)
    if nproc_per_node <= 0:
        raw = env.get("PET_NPROC_PER_NODE", "")
        nproc_per_node = max(_gpu_count(), 1) if raw in ("auto", "gpu") else _int(env, "PET_NPROC_PER_NODE", 1)
    plan = LaunchPlan(
        nnodes=_int(env, "PET_NNODES", 1),
        nproc_per_node=nproc_per_node,
        node_rank=_int(env, "PET_NODE_RANK", 0),
        master_addr=env.get("PET_MASTER_ADDR") or "127.0.0.1",
        master_port=_int(env, "PET_MASTER_PORT", 29500),
    )
    if plan.nnodes < 1 or plan.nproc_per_node < 1 or not 0 <= plan.node_rank < plan.nnodes:
        raise UserError(
            Problem(
                where="labpipe train",
                rule="launch",
                field="nproc_per_node",
                message=f"impossible layout: {plan.nnodes} nodes x {plan.nproc_per_node} processes, "
                f"this node has rank {plan.node_rank}",
                fix="use 1 or more nodes and processes, and a node rank below the node count",
            )
        )
    return plan


def fsdp_config_file() -> Path:
    return Path(str(resources.files("labpipe.training") / "accelerate" / "fsdp.yaml"))


def launch_command(plan: LaunchPlan, train_argv: list[str], *, gpu: bool) -> list[str]:
    """The command that starts this node's workers, each running `labpipe train <train_argv>`."""
    entry = ["-m", "labpipe.cli", "train", *train_argv]
    if gpu:
        return [
            sys.executable, "-m", "accelerate.commands.launch",
            "--config_file", str(fsdp_config_file()),
            "--num_processes", str(plan.world_size),
            "--num_machines", str(plan.nnodes),
            "--machine_rank", str(plan.node_rank),
            "--main_process_ip", plan.master_addr,
            "--main_process_port", str(plan.master_port),
            *(["--same_network"] if plan.nnodes > 1 else []),
            *entry,
        ]  # fmt: skip
    return [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes", str(plan.nnodes),
        "--node-rank", str(plan.node_rank),
        "--nproc-per-node", str(plan.nproc_per_node),
        "--master-addr", plan.master_addr,
        "--master-port", str(plan.master_port),
        *entry,
    ]  # fmt: skip


def run_workers(plan: LaunchPlan, train_argv: list[str], *, gpu: bool | None = None) -> None:
    """Start this node's workers and wait; SIGTERM/SIGINT (a cancelled KFP run) stops them too."""
    gpu = _gpu_count() > 0 if gpu is None else gpu
    cmd = launch_command(plan, train_argv, gpu=gpu)
    env = {k: v for k, v in os.environ.items() if k not in PET}  # the launcher gets the layout as arguments
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)

    def forward(signum, _frame):
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        rc = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if rc != 0:
        raise RuntimeError(
            f"training workers failed (exit {rc}): {plan.nnodes} node(s) x {plan.nproc_per_node} process(es), "
            f"node rank {plan.node_rank}; see the worker logs above"
        )
