"""Training with several processes on CPU (gloo), through the real launchers: `labpipe train --nproc-per-node 2`
(torchrun, one pod with 2 "GPUs") and `labpipe train` started twice as 2 "nodes" with the variables a Kubeflow
Trainer v2 torch runtime injects (PET_*). Both must match one process with the same effective batch.

Tolerance: losses and weights within 1e-5. 2 processes x per-device batch 2 x accumulation 1 see the same rows
per optimizer step as 1 process x 2 x 2 (the sampler shards whole batches, the loss is normalised by the
trained tokens of the whole step across processes); the difference left is float summation order in the gloo
all-reduce (measured 0.0 on this machine, but not guaranteed across CPUs).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from labpipe.training import checkpoints
from tests.support.weights import max_weight_diff

pytestmark = [pytest.mark.slow, pytest.mark.integration]
TOL = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(out, tiny_model, data, *extra, env=None):
    cmd = [sys.executable, "-m", "labpipe.cli", "train", "--phase", "knowledge", "--model", str(tiny_model),
           "--data", str(data), "--out", str(out), *extra]  # fmt: skip
    return subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _finish(proc, timeout=600):
    stdout, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, stderr[-4000:]
    return stdout


def _losses(out):
    state = json.loads((checkpoints.latest_checkpoint(out) / "trainer_state.json").read_text())
    return [e["loss"] for e in state["log_history"] if "loss" in e]


@pytest.fixture(scope="module")
def one_process(tiny_model, training_sets, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "out"
    _finish(_train(out, tiny_model, training_sets[0]))
    return out


def _assert_same_training(one, many, world_size):
    a, b = json.loads((one / checkpoints.SUMMARY).read_text()), json.loads((many / checkpoints.SUMMARY).read_text())
    assert (a["world_size"], b["world_size"]) == (1, world_size)
    assert a["steps"] == b["steps"] and a["tokens"] == b["tokens"] and a["trained_tokens"] == b["trained_tokens"]
    la, lb = _losses(one), _losses(many)
    assert len(la) == len(lb) == a["steps"]
    assert max(abs(x - y) for x, y in zip(la, lb, strict=True)) <= TOL
    assert max_weight_diff(one, many) <= TOL


def test_two_processes_in_one_pod_match_one_process(one_process, tiny_model, training_sets, tmp_path):
    out = tmp_path / "two"
    _finish(_train(out, tiny_model, training_sets[0], "--nproc-per-node", "2"))
    _assert_same_training(one_process, out, 2)
    # rank 0 alone wrote checkpoints (each holds both ranks' RNG states for a resume with 2 processes)
    last = checkpoints.latest_checkpoint(out)
    assert {p.name for p in last.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert not (out / checkpoints.STAGING).exists()


def test_two_nodes_with_the_trainjob_environment_match_one_process(one_process, tiny_model, training_sets, tmp_path):
    port = str(_free_port())
    procs = [
        _train(tmp_path / f"node{rank}", tiny_model, training_sets[0],
               env={"PET_NNODES": "2", "PET_NODE_RANK": str(rank), "PET_MASTER_ADDR": "127.0.0.1",
                    "PET_MASTER_PORT": port, "PET_NPROC_PER_NODE": "1"})  # fmt: skip
        for rank in (0, 1)
    ]
    outputs = [_finish(p) for p in procs]
    _assert_same_training(one_process, tmp_path / "node0", 2)
    assert not (tmp_path / "node1" / "model").exists()  # only rank 0 writes the model
    assert '"node_rank": 1' in outputs[1]


def test_two_processes_resume_from_a_durable_checkpoint_with_the_same_process_count(one_process, tiny_model,
                                                                                     training_sets, tmp_path):
    """A first attempt stops after step 4 (checkpoint-4 in the durable location, both ranks' RNG states); a second
    attempt with a fresh output resumes there with 2 processes and ends where 1 uninterrupted process does."""
    durable = tmp_path / "durable"
    _finish(_train(tmp_path / "attempt-1", tiny_model, training_sets[0], "--nproc-per-node", "2",
                   "--checkpoint-dir", str(durable), "--max-steps", "4"))  # fmt: skip
    assert checkpoints.latest_checkpoint(durable).name == "checkpoint-4"
    out = tmp_path / "attempt-2"
    _finish(_train(out, tiny_model, training_sets[0], "--nproc-per-node", "2", "--checkpoint-dir", str(durable)))
    summary = json.loads((out / checkpoints.SUMMARY).read_text())
    assert summary["resumed_from_step"] == 4 and summary["steps"] == 6
    assert sorted(p.name for p in out.iterdir() if p.name != ".labpipe-output") == ["model", checkpoints.SUMMARY]  # checkpoints stay durable
    assert max_weight_diff(one_process, out) <= TOL
