"""The stage view of `labpipe run`: one line per pipeline task with status, elapsed time and key figure.

The runner feeds every line kfp.local prints (its own messages and the tasks' streamed output) into
`RunView.feed`. The view recognises kfp.local's task boundaries (`Executing task 'x'`, `Task 'x'
finished with status ...`), writes each task's output to `<logs>/<task>.log` (everything else to
`<logs>/kfp.log`), reads `LABPIPE_PROGRESS {json}` events (labpipe.runs.progress) and `LABPIPE_PROBLEMS
[...]` lines (labpipe.errors.clean_user_errors) from the task output, and, when a task ends, its
artifact metadata from the task's executor_output.json. It shows:

- on a terminal, a live table (rich) that redraws as figures change;
- otherwise (CI logs, pipes), one plain line per stage transition.

The stage list comes from the compiled DAG (`StageInfo` per task, in dependency order); the components of
the stage table (labpipe.runs.stages) get their stages' key figures, any other task a generic one. This
module never imports kfp.
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from labpipe.errors import Problem, parse_problems
from labpipe.runs.progress import parse as parse_progress
from labpipe.runs.stages import failed_figure, generic_figure, key_figure

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
EXECUTING = re.compile(r"Executing task '([^']+)'")
FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
PIPELINE_DONE = re.compile(r"Pipeline '([^']+)' finished with status (\w+)")

SYMBOL = {"pending": "·", "running": "▶", "done": "✓", "failed": "✗", "skipped": "–", "interrupted": "✗"}
PLAIN_WORD = {"running": "started", "done": "done", "failed": "FAILED", "skipped": "skipped",
              "interrupted": "interrupted"}
STYLE = {"pending": "dim", "running": "bold cyan", "done": "green", "failed": "bold red", "skipped": "dim"}


@dataclass
class StageInfo:
    """One task of the compiled DAG: its KFP task name, display name and component (e.g. `sft`)."""

    task: str
    label: str
    component: str


@dataclass
class Stage:
    info: StageInfo
    status: str = "pending"
    started: float | None = None
    ended: float | None = None
    figure: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)  # artifact name -> metadata; "_params" outputs
    problems: list[Problem] = field(default_factory=list)
    tail: deque = field(default_factory=lambda: deque(maxlen=40))
    log_path: Path | None = None

    def elapsed(self, now: float | None = None) -> float:
        if self.started is None:
            return 0.0
        return (self.ended or now or time.time()) - self.started


def _num(value: Any, fmt: str = "g") -> str:
    try:
        return format(float(value), fmt)
    except (TypeError, ValueError):
        return str(value)


def progress_figure(event: dict[str, Any]) -> str:
    """A key figure from a LABPIPE_PROGRESS event (known stages specifically, others generically)."""
    stage = event.get("stage", "")
    if stage == "synthetic_generation" and "total" in event:
        return f"{event.get('done', 0)}/{event['total']} requests ({event.get('cached', 0)} reused)"
    if stage == "training" and "step" in event:
        loss = f", loss {_num(event['loss'], '.3f')}" if event.get("loss") is not None else ""
        return f"{event.get('phase', '')} step {event['step']}/{event.get('max_steps', '?')}{loss}".strip()
    if stage == "mt_bench_eval" and "done" in event:
        who = f" by {event['model']}" if event.get("what") == "judged" and event.get("model") else \
            f" for {event['model']}" if event.get("model") else ""
        return f"turns {event.get('what', 'done')}{who}: {event['done']}/{event.get('total', '?')}"
    return generic_figure({k: v for k, v in event.items() if k != "stage"})


def final_figure(component: str, metadata: dict[str, dict[str, Any]]) -> str:
    """The key figure of a finished task from its output artifacts' metadata (the stage table's)."""
    return key_figure(component, metadata)


class RunView:
    """Consumes kfp.local's output lines; renders live (terminal) or plainly (one line per transition)."""

    def __init__(self, stages: list[StageInfo], logs_dir: Path, out: TextIO, *, live: bool,
                 verbose: bool = False, task_outputs: Callable[[str], dict[str, dict[str, Any]]] | None = None):
        self.stages = {s.task: Stage(s) for s in stages}
        self.logs_dir = Path(logs_dir)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.verbose = verbose
        self.task_outputs = task_outputs
        self.started = time.time()
        self.current: Stage | None = None
        self._log: TextIO | None = None
        self._kfp_log = open(self.logs_dir / "kfp.log", "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._partial = ""
        self._live = None
        self.pipeline_status = ""
        self.interrupted = False  # set on Ctrl-C: the running task is shown as interrupted, not failed
        if live:
            from rich.console import Console
            from rich.live import Live

            self.console = Console(file=out)
            self._live = Live(self, console=self.console, refresh_per_second=4, transient=False,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start()

    # -- input ---------------------------------------------------------------------------------------
    def write(self, text: str) -> int:
        """File-like: accepts any chunk of output, processes complete lines."""
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            self.feed(line)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def feed(self, raw: str) -> None:
        line = ANSI.sub("", raw).rstrip("\r")
        if self.verbose:
            print(raw, file=self.out, flush=True)
        if m := EXECUTING.search(line):
            self._start(m.group(1))
            self._kfp_log.write(line + "\n")
            return
        if m := FINISHED.search(line):
            self._finish(m.group(1), "done" if m.group(2) == "SUCCESS" else "failed")
            self._kfp_log.write(line + "\n")
            return
        if m := PIPELINE_DONE.search(line):
            self.pipeline_status = m.group(2)
        stage = self.current
        if stage is None or self._log is None:
            self._kfp_log.write(line + "\n")
            self._kfp_log.flush()
            return
        text = line[4:] if line.startswith("    ") else line  # kfp.local indents streamed task logs
        self._log.write(text + "\n")
        self._log.flush()
        stage.tail.append(text)
        if (event := parse_progress(text)) is not None:
            stage.figure = progress_figure(event)
            self._refresh()
        elif (problems := parse_problems(text)) is not None:  # a retried task repeats them: each once
            stage.problems.extend(p for p in problems if p not in stage.problems)

    # -- transitions ---------------------------------------------------------------------------------
    def _stage(self, task: str) -> Stage:
        if task not in self.stages:  # a task the DAG description did not list: show it anyway
            self.stages[task] = Stage(StageInfo(task, task, re.sub(r"-\d+$", "", task)))
        return self.stages[task]

    def _start(self, task: str) -> None:
        stage = self._stage(task)
        stage.status, stage.started = "running", time.time()
        stage.log_path = self.logs_dir / f"{task}.log"
        if self._log:
            self._log.close()
        self._log = open(stage.log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed at the task's end
        self.current = stage
        self._transition(stage)

    def _finish(self, task: str, status: str) -> None:
        stage = self._stage(task)
        stage.status, stage.ended = status, time.time()
        if self._log:
            self._log.close()
            self._log = None
        self.current = None
        if status == "done" and self.task_outputs is not None:
            try:
                stage.metadata = self.task_outputs(task)
            except (OSError, ValueError):
                stage.metadata = {}
            stage.figure = final_figure(stage.info.component, stage.metadata) or stage.figure
        elif status == "failed":
            stage.figure = (f"{len(stage.problems)} problem(s)" if stage.problems else "error") + \
                f": see {stage.log_path}"
        self._transition(stage)

    def close(self) -> None:
        """End of run: tasks never started were skipped (a condition, or an earlier failure)."""
        for stage in self.stages.values():
            if stage.status == "pending":
                stage.status = "skipped"
                self._transition(stage)
            elif stage.status == "running":  # the pipeline stopped under it (Ctrl-C: interrupted, not failed)
                stage.status, stage.ended = "interrupted" if self.interrupted else "failed", time.time()
                self._transition(stage)
        if self._partial:
            self.feed(self._partial)
            self._partial = ""
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None
        if self._log:
            self._log.close()
        self._kfp_log.close()

    def _transition(self, stage: Stage) -> None:
        if self._live is not None:
            self._live.refresh()
            return
        word = PLAIN_WORD.get(stage.status, stage.status)
        took = f" in {stage.elapsed():.0f}s" if stage.status in ("done", "failed", "interrupted") else ""
        figure = f"  {stage.figure}" if stage.figure and stage.status != "running" else ""
        print(f"[{time.time() - self.started:6.0f}s] {SYMBOL[stage.status]} {stage.info.label}: {word}{took}{figure}",
              file=self.out, flush=True)

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.refresh()

    # -- rich renderable -----------------------------------------------------------------------------
    def __rich__(self):
        from rich.table import Table

        table = Table(box=None, show_header=False, padding=(0, 1), expand=False)
        table.add_column(width=1)
        table.add_column(no_wrap=True)
        table.add_column(justify="right", no_wrap=True)
        table.add_column(overflow="ellipsis", no_wrap=True)
        now = time.time()
        for stage in list(self.stages.values()):
            elapsed = f"{stage.elapsed(now):.0f}s" if stage.started else ""
            table.add_row(SYMBOL[stage.status], stage.info.label, elapsed, stage.figure,
                          style=STYLE[stage.status])
        table.caption = f"elapsed {now - self.started:.0f}s; logs in {self.logs_dir}"
        return table

    # -- after the run -------------------------------------------------------------------------------
    def failed(self) -> list[Stage]:
        return [s for s in self.stages.values() if s.status == "failed"]


def task_outputs(job_dir: Path, task: str) -> dict[str, dict[str, Any]]:
    """A finished task's outputs; a task inside a ParallelFor (kfp.local: `for-loop-N-iteration-I/<task>/`) has
    one per iteration: its numbers are summed, so the figure is the final count of all shards."""
    direct = Path(job_dir) / task
    iterations = sorted(Path(job_dir).glob(f"for-loop-*-iteration-*/{task}"))
    if (direct / "executor_output.json").is_file() or not iterations:
        return read_executor_outputs(direct)
    merged: dict[str, dict[str, Any]] = {}
    for one in (read_executor_outputs(d) for d in iterations if (d / "executor_output.json").is_file()):
        for name, values in one.items():
            into = merged.setdefault(name, {})
            for key, value in values.items():
                summable = isinstance(value, int | float) and not isinstance(value, bool)
                into[key] = into.get(key, 0) + value if summable and key in into else value
    return merged


def read_executor_outputs(task_dir: Path) -> dict[str, dict[str, Any]]:
    """artifact name -> metadata (and "_params" -> output parameters) from a task's executor_output.json."""
    data = json.loads((Path(task_dir) / "executor_output.json").read_text())
    found: dict[str, dict[str, Any]] = {}
    for name, arts in data.get("artifacts", {}).items():
        for art in arts.get("artifacts", []):
            found[name] = dict(art.get("metadata") or {})
    found["_params"] = dict(data.get("parameterValues") or {})
    return found


def summary_lines(view: RunView, artifacts: list, *, job_dir: Path, seconds: float, report: Path | None,
                  pipeline_run_id: str, tracking_uri: str) -> list[str]:
    """The end-of-run summary a person reads in ten seconds (scores, gate, version, where things are)."""
    counts = {s: sum(1 for st in view.stages.values() if st.status == s) for s in ("done", "skipped")}
    lines = [f"\npipeline finished in {seconds:.0f} s: {counts['done']} tasks done, {counts['skipped']} skipped"]
    by_component = {st.info.component: st for st in view.stages.values()}
    evaluation = by_component.get("mt-bench-eval") or by_component.get("mt-bench-eval-gpu")
    decision: dict[str, Any] = {}
    for art in artifacts:
        if art.name == "decision" and Path(art.uri).is_file():
            try:
                decision = json.loads(Path(art.uri).read_text())
            except (OSError, ValueError):
                decision = dict(art.metadata)
    if evaluation is not None and evaluation.metadata:
        scores = evaluation.metadata.get("metrics", {})
        production = decision.get("production")
        lines.append(f"  MT-Bench   candidate {_num(scores.get('candidate.overall'), '.2f')} | base "
                     f"{_num(scores.get('base.overall'), '.2f')} | production "
                     f"{_num(production, '.2f') if production is not None else 'none'}")
    if decision:
        verdict = "PUBLISH" if decision.get("publish") else "HOLD"
        reasons = decision.get("reasons") or []
        lines.append(f"  gate       {verdict}" + "".join(f"\n             - {r}" for r in reasons))
    for stage in view.stages.values():  # requests that failed for good but were tolerated: said, not hidden
        meta = stage.metadata.get("generated") or stage.metadata.get("report") or {}
        if stage.status == "done" and meta.get("failure_kinds"):
            failed = meta.get("requests_failed", meta.get("judge_requests_failed", "?"))
            lines.append(f"  failed     {stage.info.label}: {_num(failed)} request(s) failed for good"
                         f"{failed_figure(meta)} (details: its manifest / yield report)")
    publish = by_component.get("publish-model")
    if publish is not None and publish.status == "done":
        version = publish.metadata.get("_params", {}).get("Output", "?")
        lines.append(f"  published  version {version}, aliased production")
    elif by_component.get("nothing-to-do") is not None and by_component["nothing-to-do"].status == "done":
        lines.append("  published  nothing (nothing to do: nothing that determines the model changed since "
                     "production)")
    elif publish is not None and decision and not decision.get("publish"):
        lines.append("  published  nothing (the gate held the candidate)")
    elif publish is not None:
        lines.append("  published  nothing")
    lines += [f"  artifacts  {job_dir}", f"  logs       {view.logs_dir}"]
    if pipeline_run_id:
        lines += [f"  lineage    labpipe lineage --pipeline-run {pipeline_run_id} --tracking-uri {tracking_uri}",
                  f"  browse     mlflow ui --backend-store-uri {tracking_uri}"]
    if report is not None:
        lines.append(f"  report     {report}")  # the last line: the one page to open
    return lines
