"""The stage view's parsing and plain rendering, the component error hook, and the DAG-derived stage list."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

from labpipe.errors import PROBLEMS_PREFIX, Problem
from labpipe.runs.progress import PREFIX
from labpipe.runs.runview import RunView, StageInfo

CYAN, RESET, GREEN, RED = "\x1b[96m", "\x1b[0m", "\x1b[92m", "\x1b[91m"
STAGES = [StageInfo("taxonomy-diff", "1 taxonomy diff", "taxonomy-diff"),
          StageInfo("sft", "5 knowledge SFT", "sft"),
          StageInfo("publish-model", "publish", "publish-model")]


def _kfp_lines(problem: Problem) -> list[str]:
    """What kfp.local 2.17 prints for a run whose second task fails (format as in a real run's output)."""
    event = PREFIX + json.dumps({"stage": "training", "step": 3, "max_steps": 8, "loss": 5.5})
    return [
        f"10:28:46.100 - INFO - Running pipeline: \x1b[95m'lab-pipeline'{RESET}",
        "-" * 80,
        f"10:28:46.107 - INFO - Executing task {CYAN}'taxonomy-diff'{RESET}",
        "10:28:46.107 - INFO - Streamed logs:",
        "",
        "    [KFP Executor 2026-12-01 10:28:46,648 INFO]: Looking for component `taxonomy_diff`",
        f"10:28:51.482 - INFO - Task {CYAN}'taxonomy-diff'{RESET} finished with status {GREEN}SUCCESS{RESET}",
        f"10:28:51.491 - INFO - Executing task {CYAN}'sft'{RESET}",
        "10:28:51.491 - INFO - Streamed logs:",
        f"    {event}",
        f"    {problem}",
        f"    {PROBLEMS_PREFIX}{json.dumps([problem.__dict__])}",
        f"10:28:59.856 - ERROR - Task {CYAN}'sft'{RESET} finished with status {RED}FAILURE{RESET}",
    ]


def test_plain_view_one_line_per_transition_logs_per_task(tmp_path):
    problem = Problem("data.jsonl:3:1", "messages", "no assistant turn", fix="add one", field="messages")
    out = io.StringIO()
    outputs = {"taxonomy-diff": {"diff": {"leaves": 3, "leaves_added": 3}, "_params": {}}}
    view = RunView(STAGES, tmp_path / "logs", out, live=False, task_outputs=outputs.__getitem__)
    for line in _kfp_lines(problem):
        view.write(line + "\n")
    view.close()
    lines = out.getvalue().splitlines()
    assert [line.split("] ", 1)[1].split(":")[0:2] for line in lines] == [
        ["▶ 1 taxonomy diff", " started"], ["✓ 1 taxonomy diff", " done in 0s  3 changed leaves (3 added, 0 modified, 0 deleted)"],
        ["▶ 5 knowledge SFT", " started"], ["✗ 5 knowledge SFT", " FAILED in 0s  1 problem(s)"],
        ["– publish", " skipped"],
    ]
    sft = view.stages["sft"]
    assert sft.problems == [problem]
    assert view.failed() == [sft]
    log = (tmp_path / "logs" / "sft.log").read_text()
    assert str(problem) in log and "\x1b[" not in log and not log.startswith("    ")
    assert "Looking for component" in (tmp_path / "logs" / "taxonomy-diff.log").read_text()
    assert "Running pipeline" in (tmp_path / "logs" / "kfp.log").read_text()


def test_progress_event_sets_the_running_figure(tmp_path):
    view = RunView(STAGES, tmp_path / "logs", io.StringIO(), live=False)
    view.feed(f"Executing task {CYAN}'sft'{RESET}")
    view.feed("    " + PREFIX + json.dumps({"stage": "training", "step": 3, "max_steps": 8, "loss": 5.25}))
    assert view.stages["sft"].figure == "step 3/8, loss 5.250"
    view.feed("    " + PREFIX + json.dumps({"stage": "new_stage", "records": 7}))  # unknown: shown generically
    assert view.stages["sft"].figure == "records=7"


def test_live_view_renders_a_table(tmp_path):
    out = io.StringIO()
    view = RunView(STAGES, tmp_path / "logs", out, live=True)
    view.feed(f"Executing task {CYAN}'taxonomy-diff'{RESET}")
    view.close()
    text = out.getvalue()
    assert "1 taxonomy diff" in text and "publish" in text


HOOK = textwrap.dedent("""
    import sys
    from labpipe.errors import Problem, UserError, clean_user_errors
    clean_user_errors()
    if sys.argv[1] == "user":
        raise UserError(Problem("leaf/qna.yaml:4:3", "schema", "seed_examples: too few", fix="add 5", field="seed_examples"))
    raise ZeroDivisionError("a genuine bug")
""")


def test_user_error_in_a_component_prints_problems_without_traceback():
    proc = subprocess.run([sys.executable, "-c", HOOK, "user"], capture_output=True, text=True,
                          env={"LABPIPE_PROGRESS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "leaf/qna.yaml:4:3: error: schema [seed_examples]: seed_examples: too few Fix: add 5" in proc.stderr
    assert PROBLEMS_PREFIX in proc.stderr


def test_a_genuine_bug_keeps_its_traceback():
    proc = subprocess.run([sys.executable, "-c", HOOK, "bug"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ZeroDivisionError: a genuine bug" in proc.stderr


def test_stage_list_follows_the_compiled_dag():
    from labpipe.pipelines.lab_pipeline import lab_pipeline
    from labpipe.pipelines.runner import pipeline_stages

    spec = lab_pipeline.pipeline_spec
    leaf_tasks = {}
    for dag in [spec.root.dag, *(c.dag for c in spec.components.values() if c.HasField("dag"))]:
        for key, task in dag.tasks.items():
            comp = spec.components[task.component_ref.name]
            if not (comp.HasField("dag") and comp.dag.tasks):
                leaf_tasks[key] = set(task.dependent_tasks)
    stages = pipeline_stages()
    order = [s.task for s in stages]
    assert sorted(order) == sorted(leaf_tasks)
    for task, deps in leaf_tasks.items():
        for dep in deps & set(order):
            assert order.index(dep) < order.index(task), (dep, task)
    assert all(s.label for s in stages)


def test_a_failed_task_with_a_bug_shows_its_traceback_and_log(tmp_path, capsys):
    from labpipe.pipelines.runner import failed_run_error

    view = RunView(STAGES, tmp_path / "logs", io.StringIO(), live=False)
    for line in [f"Executing task {CYAN}'sft'{RESET}", "    loading data", "    Traceback (most recent call last):",
                 '      File "stage.py", line 3, in run', "    ZeroDivisionError: division by zero",
                 f"Task {CYAN}'sft'{RESET} finished with status {RED}FAILURE{RESET}"]:
        view.feed(line)
    view.close()
    err = failed_run_error(view, "Task sft finished with status FAILURE")
    printed = capsys.readouterr().err
    assert printed.startswith("Traceback (most recent call last):") and "ZeroDivisionError" in printed
    [problem] = err.problems
    assert problem.where == "task sft (5 knowledge SFT)"
    assert problem.message == "failed: ZeroDivisionError: division by zero"
    assert str(tmp_path / "logs" / "sft.log") in problem.fix


def test_verbose_streams_raw_output_as_well(tmp_path):
    out = io.StringIO()
    view = RunView(STAGES, tmp_path / "logs", out, live=False, verbose=True)
    view.feed(f"Executing task {CYAN}'sft'{RESET}")
    view.feed("    [KFP Executor] Got executor_input: {}")
    view.close()
    text = out.getvalue()
    assert "    [KFP Executor] Got executor_input: {}" in text and "▶ 5 knowledge SFT: started" in text
    assert "Got executor_input" in (tmp_path / "logs" / "sft.log").read_text()


def test_tolerated_failures_in_the_key_figure_and_the_summary(tmp_path):
    from labpipe.runs.runview import final_figure

    meta = {"records": 406, "requests_sent": 219, "requests_cached": 0, "requests_failed": 1,
            "failure_kinds": {"http": 1}, "max_failed_share": 0.01}  # fmt: skip
    figure = final_figure("synthetic-generation", {"generated": meta})
    assert figure == "406 generated from 219 requests (0 reused, 1 failed: 1 http; tolerated up to 1%)"
    clean = {**meta, "requests_failed": 0, "failure_kinds": {}}
    assert final_figure("synthetic-generation", {"generated": clean}).endswith("(0 reused, 0 failed)")
