"""Issue 20, items 3, 6, 7 and 9: the smaller things a new user met in the first hour, one test each."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from labpipe.cli import main


def test_a_second_writer_of_the_same_out_is_refused(tmp_path, capsys):
    """Item 7: two `labpipe generate` into one --out both sent every request. A real second process holds the
    folder (the lock is released however that process ends)."""
    out = tmp_path / "gen"

    def generate() -> int:
        return main(["generate", "--seeds", str(tmp_path / "seeds.jsonl"), "--out", str(out),
                     "--teacher", "http://127.0.0.1:9/v1"])  # fmt: skip

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from labpipe.storage import writing_folder\n"
            f"with writing_folder({str(out)!r}):\n    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert generate() == 1
        assert "another labpipe process is writing this folder now" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert generate() == 1  # free again: now the missing seeds file is the error
    assert "seeds.jsonl" in capsys.readouterr().err


def test_a_failed_command_leaves_no_empty_out(tmp_path):
    from labpipe.errors import UserError
    from labpipe.storage import writing_folder

    with pytest.raises(UserError):
        with writing_folder(tmp_path / "gen"):
            raise UserError("teacher unreachable")
    assert not (tmp_path / "gen").exists()


def test_taxonomy_validate_of_a_folder_without_a_taxonomy_fails(tmp_path, capsys):
    assert main(["taxonomy", "validate", "--taxonomy", str(tmp_path)]) == 1
    assert "no qna.yaml found: this folder holds no taxonomy" in capsys.readouterr().err


def test_cache_none_means_off(tmp_path, monkeypatch):
    from labpipe.llm.cache import open_cache

    monkeypatch.chdir(tmp_path)
    assert open_cache("none") is None and open_cache("off") is None
    assert list(tmp_path.iterdir()) == []  # no cache folder named "none"


def test_a_nothing_to_do_summary_says_nothing_to_do(tmp_path):
    from labpipe.runs.runview import RunView, StageInfo, summary_lines

    tasks = {"publish-model": "skipped", "nothing-to-do": "done", "run-report": "skipped"}
    view = RunView([StageInfo(t, t, t) for t in tasks], tmp_path / "logs", sys.stdout, live=False)
    for task, status in tasks.items():
        view.stages[task].status = status
    text = "\n".join(
        summary_lines(view, [], job_dir=tmp_path, seconds=1, report=None, pipeline_run_id="", tracking_uri="")
    )
    assert "published  nothing (nothing to do" in text and "gate held" not in text


def test_the_generation_figure_is_the_final_count_of_every_shard(tmp_path):
    """Item 9: a task inside the ParallelFor lives in kfp.local's for-loop-N-iteration-I folder; the figure was
    the last progress event ("43/67 requests") instead of its outputs."""
    from labpipe.runs.runview import final_figure, task_outputs

    for i, (records, sent, cached) in enumerate(((30, 40, 0), (20, 0, 27))):
        task = tmp_path / f"for-loop-3-iteration-{i}" / "synthetic-generation"
        task.mkdir(parents=True)
        meta = {"records": records, "requests_sent": sent, "requests_cached": cached, "requests_failed": 0}
        (task / "executor_output.json").write_text(
            json.dumps({"artifacts": {"generated": {"artifacts": [{"name": "generated", "metadata": meta}]}}})
        )
    figure = final_figure("synthetic-generation", task_outputs(tmp_path, "synthetic-generation"))
    assert figure == "50 generated from 40 requests (27 reused, 0 failed)"


def test_base_model_says_which_settings_apply(tmp_path, monkeypatch, capsys, tiny_model, shared_data):
    """Item 6: --base-model silently switched to the full LAB settings."""
    from labpipe.commands.pipeline import local_arguments

    monkeypatch.setenv("LABPIPE_MT_BENCH_DATA", str(shared_data / "mt_bench"))
    args = argparse.Namespace(
        taxonomy=None,
        base=None,
        base_model=str(tiny_model),
        teacher=None,
        teacher_model="",
        judge=None,
        judge_model="",
        param=["training_preset=smoke"],
    )
    arguments = local_arguments(args, tmp_path)
    out = capsys.readouterr().out
    assert "with --base-model the pipeline's LAB defaults apply" in out
    assert "--param critique_profile=smoke" in out and "--param training_preset" not in out
    assert "critique_profile" not in arguments and arguments["training_preset"] == "smoke"


def _checkpoint(durable: Path, step: int, max_steps: int) -> None:
    ckpt = durable / "checkpoints" / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": max_steps}))


def test_training_resumes_an_interrupted_phase_and_redoes_a_finished_one(tmp_path):
    """Item 3: without checkpoint_root, checkpoints are keyed by the training's inputs (the run id changed every
    run, so a rerun trained from step 0); a phase an earlier run finished starts over as it always did."""
    from labpipe.training.task import _unless_finished

    partial, finished = tmp_path / "partial", tmp_path / "finished"
    _checkpoint(partial, 4, 12)
    _checkpoint(finished, 12, 12)
    _unless_finished(str(partial))
    _unless_finished(str(finished))
    assert (partial / "checkpoints" / "checkpoint-4").is_dir()
    assert not finished.exists()


def test_the_checkpoint_key_is_the_inputs_not_the_run_or_a_file_time(tmp_path, tiny_model):
    import os
    import shutil

    from labpipe.training.task import SftTaskConfig, _checkpoint_key

    data = tmp_path / "data.jsonl"
    data.write_text('{"messages": []}\n')
    copy = shutil.copytree(tiny_model, tmp_path / "elsewhere" / "tiny")
    for f in copy.iterdir():
        os.utime(f, (1, 1))
    one = _checkpoint_key(
        SftTaskConfig(phase="knowledge", base_model=str(tiny_model), data=str(data), out="", run_id="run-1")
    )
    two = _checkpoint_key(
        SftTaskConfig(phase="knowledge", base_model=str(copy), data=str(data), out="", run_id="run-2")
    )
    assert one == two and one.startswith("inputs-")
    root = _checkpoint_key(
        SftTaskConfig(
            phase="knowledge",
            base_model=str(copy),
            data=str(data),
            out="",
            run_id="run-2",
            checkpoint_root="s3://b/c",
        )
    )
    assert root == "run-2"  # a durable root keeps its <root>/<run id>/<phase> layout


def test_a_task_running_at_ctrl_c_is_shown_interrupted_not_failed(tmp_path):
    import io

    from labpipe.runs.runview import RunView, StageInfo

    out = io.StringIO()
    view = RunView([StageInfo("sft", "5 knowledge SFT", "sft")], tmp_path / "logs", out, live=False)
    view.stages["sft"].status, view.stages["sft"].started = "running", 0.0
    view.interrupted = True
    view.close()
    assert "✗ 5 knowledge SFT: interrupted in" in out.getvalue() and "FAILED" not in out.getvalue()
