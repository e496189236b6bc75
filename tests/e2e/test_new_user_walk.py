"""A new user's first hour (issue 20), scripted: the README's commands and the usual mistakes, as a person types
them in an empty folder, through the installed `labpipe` in subprocesses.

Every mistake: the exit code, no traceback, the one line (per problem) that says what to fix, and no folder or
file left behind. The README's `labpipe run` (with `--param gate_tolerance=0`, the documented default) is
interrupted with SIGINT to its process group (what Ctrl-C does) once training wrote a checkpoint, then rerun
with the same command: the MLflow run of the interrupted one is KILLED with a report written, and the rerun
sends no teacher request again and resumes training. TMPDIR is a folder of the test's: it must end empty.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

LABPIPE = str(Path(sys.executable).parent / "labpipe")


@pytest.fixture(scope="module")
def home(tmp_path_factory, shared_data):
    """An empty folder to work in, its own TMPDIR and HOME, the README's environment (`make run` passes the
    MT-Bench copy beside the checkout)."""
    root = tmp_path_factory.mktemp("new-user")
    for name in ("work", "tmp", "home"):
        (root / name).mkdir()
    drop = ("MLFLOW_TRACKING_URI", "LABPIPE_CACHE", "TORCHINDUCTOR_CACHE_DIR", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        TMPDIR=str(root / "tmp"),
        HOME=str(root / "home"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        LABPIPE_MT_BENCH_DATA=str(shared_data / "mt_bench"),
    )
    return root, env


def _labpipe(home, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    root, env = home
    return subprocess.run(
        [LABPIPE, *args], cwd=root / "work", env=env, capture_output=True, text=True, timeout=timeout
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _left(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "tmp").iterdir())


def test_mistakes_are_answered_in_one_line_and_leave_nothing(home):
    root, _ = home
    work = root / "work"
    (work / "notes").mkdir()
    (work / "notes" / "notes.txt").write_text("mine")
    (work / "empty").mkdir()
    port = _closed_port()
    mistakes = [  # (command, what the error line says)
        (
            ["model", "init-tiny", "--out", "notes"],
            "the output folder already holds files labpipe did not write (notes.txt); nothing was changed",
        ),
        (["run", "--param", "gate_tolerance=abc"], "'abc' is not a number (gate_tolerance is float)"),
        (["run", "--param", "max_steps=1.5"], "'1.5' is not an integer (max_steps is int)"),
        (["run", "--param", "generation_gate=maybe"], "'maybe' is not a boolean"),
        (
            ["run", "--taxonomy", "./taxonmy"],
            "--taxonomy ./taxonmy: error: taxonomy [taxonomy]: no such directory",
        ),
        (
            ["run", "--base-model", "./granite"],
            "--base-model: error: model [base_model]: ./granite is empty or does not exist",
        ),
        (
            ["run", "--teacher", f"http://127.0.0.1:{port}/v1"],
            f"http://127.0.0.1:{port}/v1 does not answer (cannot connect",
        ),
        (["preflight", "--offline"], "parameter taxonomy: error: preflight [taxonomy]: is required"),
        (["taxonomy", "validate", "--taxonomy", "empty"], "this folder holds no taxonomy"),
        (["runs", "--tracking-uri", f"http://127.0.0.1:{port}"], "the MLflow server does not answer"),
        (["runs", "--tracking-uri", "sqlite:///missing/mlflow.db"], "no MLflow store at"),
        (["report", "1", "--tracking-uri", "sqlite:///missing/mlflow.db"], "no MLflow store at"),
    ]
    for command, line in mistakes:
        proc = _labpipe(home, *command)
        said = f"labpipe {' '.join(command)}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        assert proc.returncode == 1, said
        assert "Traceback" not in proc.stdout + proc.stderr, said
        errors = [x for x in proc.stderr.splitlines() if ": error: " in x]
        assert errors and all(" Fix: " in x for x in errors), said
        assert line in proc.stderr, said
    assert (work / "notes" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in work.iterdir()) == ["empty", "notes"]  # no runs/, missing/, report.html
    assert _left(root) == []


def _checkpoint_written(work: Path) -> bool:
    return any(work.glob("runs/cache/checkpoints/*/knowledge/checkpoints/checkpoint-*"))


def _pipeline_run(workdir: Path):
    from mlflow.tracking import MlflowClient

    from labpipe.runs import tracking

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name(tracking.DEFAULT_EXPERIMENT)
    [run] = client.search_runs([exp.experiment_id], filter_string=f"tags.`{tracking.ROLE_TAG}` = 'pipeline'")
    return run


def _task_metadata(workdir: Path, task: str, artifact: str) -> dict:
    from labpipe.runs.runview import task_outputs

    [job] = (workdir / "kfp").iterdir()
    return task_outputs(job, task)[artifact]


@pytest.mark.timeout(3600)
def test_ctrl_c_then_the_same_command_resumes(home):
    root, env = home
    work = root / "work"
    command = [LABPIPE, "run", "--plain", "--param", "gate_tolerance=0"]
    with open(root / "first.out", "w") as out, open(root / "first.err", "w") as err:
        proc = subprocess.Popen(command, cwd=work, env=env, stdout=out, stderr=err, start_new_session=True)
        deadline = time.monotonic() + 2400
        while not _checkpoint_written(work) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before training wrote a checkpoint"
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
        rc = proc.wait(timeout=300)
    first_out, first_err = (root / "first.out").read_text(), (root / "first.err").read_text()
    assert rc == 130, first_out[-3000:] + first_err[-3000:]
    assert "Traceback" not in first_out + first_err
    assert re.search(r"✗ 5 knowledge SFT: interrupted in \d+s", first_out), first_out  # not "FAILED"
    assert re.search(
        r"interrupted\. Rerun the same command: the teacher and judge replies already received are "
        r"reused \(.*\); training resumes from its last checkpoint",
        first_err,
    ), first_err
    [first] = [d for d in (work / "runs").iterdir() if d.name != "cache"]
    assert _pipeline_run(first).info.status == "KILLED"
    assert (first / "report.html").is_file()

    second = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=2400)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "Traceback" not in second.stdout + second.stderr
    [workdir] = [d for d in (work / "runs").iterdir() if d.name not in ("cache", first.name)]
    generated = _task_metadata(workdir, "synthetic-generation", "generated")
    assert generated["requests_sent"] == 0 and generated["requests_cached"] > 0, generated
    assert re.search(
        rf"synthetic generation: done in \d+s  \d+ generated from 0 requests "
        rf"\({generated['requests_cached']} reused, 0 failed\)",
        second.stdout,
    )
    trained = _task_metadata(workdir, "sft", "model")
    assert trained["resumed_from_step"] > 0, trained
    assert _pipeline_run(workdir).info.status == "FINISHED"

    lineage = _labpipe(
        home, "lineage", "labpipe-model", "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}"
    )
    assert lineage.returncode == 1 and "Traceback" not in lineage.stderr
    if "published  version" in second.stdout:
        assert "labpipe-model@production" in lineage.stderr, lineage.stderr
    leftovers = [
        p
        for p in work.rglob("*")
        if p.name == ".tmp"
        or p.name.startswith("kfp-workspace-")
        or re.fullmatch(r"(mt-bench-|tmp)[a-z0-9_]{8}", p.name)
    ]  # mkdtemp's names
    assert leftovers == [] and _left(root) == []
