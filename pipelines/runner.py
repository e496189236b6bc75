"""Compile, run locally (kfp.local), submit and schedule the LAB pipeline.

The CLI (labpipe.commands.pipeline) imports this module lazily; it is the only place besides the
components and the DAG that touches kfp.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labpipe.errors import UserError
from labpipe.paths import pipelines_dir

PIPELINE_YAML = "lab_pipeline.yaml"


def default_compile_out() -> Path:
    """pipelines/lab_pipeline.yaml in a checkout you are in; else lab_pipeline.yaml here (never into an installed
    package)."""
    shipped = pipelines_dir()
    here = Path.cwd().resolve()
    return shipped / PIPELINE_YAML if shipped.resolve().is_relative_to(here) else here / PIPELINE_YAML


def compile_pipeline(out: str | Path | None = None) -> Path:
    """Compile the DAG to KFP IR YAML (deterministic: same code, same bytes); integer defaults are written as
    integers (KFP writes every number as a float: `chunk_tokens: int [Default: 1000.0]`)."""
    from kfp import compiler
    from labpipe.pipelines.lab_pipeline import lab_pipeline

    out = Path(out) if out else default_compile_out()
    out.parent.mkdir(parents=True, exist_ok=True)
    _describe_parameters(lab_pipeline.pipeline_spec)
    compiler.Compiler().compile(lab_pipeline, str(out))
    out.write_text(_integer_defaults(out.read_text()))
    return out


def _describe_parameters(spec) -> None:
    """Each pipeline parameter's description (pipelines/parameters.yaml), shown by the KFP dashboards."""
    import yaml

    described = yaml.safe_load((Path(__file__).parent / "parameters.yaml").read_text())
    for name, parameter in spec.root.input_definitions.parameters.items():
        parameter.description = described.get(name, "")


def _integer_defaults(text: str) -> str:
    """`int [Default: 32.0]` -> `32` in the header; `defaultValue: 32.0` -> `32` where the type is NUMBER_INTEGER."""
    text = re.sub(r"^(#\s+\w+: int \[Default: -?\d+)\.0\]$", r"\1]", text, flags=re.M)
    between = r"((?:\1(?:description|isOptional): .*\n(?:\1 +\S.*\n)*)*)"  # a description may wrap
    return re.sub(r"^( +)defaultValue: (-?\d+)\.0\n" + between + r"(\1parameterType: NUMBER_INTEGER)$",
                  r"\1defaultValue: \2\n\3\4", text, flags=re.M)


@dataclass
class ProducedArtifact:
    task: str
    name: str
    uri: str
    metadata: dict[str, Any]


def pipeline_stages() -> list:
    """The tasks of the compiled DAG in dependency order (condition groups flattened), for the stage view."""
    from labpipe.pipelines.lab_pipeline import lab_pipeline

    from labpipe.runview import StageInfo

    spec = lab_pipeline.pipeline_spec
    found: dict[str, tuple[StageInfo, set[str]]] = {}
    members: dict[str, set[str]] = {}  # group task (dsl.If, ParallelFor, ExitHandler) -> the leaf tasks in it

    def walk(dag, outer_deps: set[str]) -> set[str]:
        added: set[str] = set()
        for key, task in sorted(dag.tasks.items()):
            comp = task.component_ref.name
            deps = set(task.dependent_tasks) | outer_deps
            inner = spec.components[comp].dag if comp in spec.components else None
            if inner is not None and inner.tasks:  # a group: show its tasks
                members[key] = walk(inner, deps)
                added |= members[key]
                continue
            component = re.sub(r"-\d+$", "", comp.removeprefix("comp-"))
            found[key] = (StageInfo(key, task.task_info.name or key, component), deps)
            added.add(key)
        return added

    walk(spec.root.dag, set())
    ordered: list[StageInfo] = []
    done: set[str] = set()

    def satisfied(dep: str) -> bool:
        if dep in members:  # a task after a group runs after everything in it
            return members[dep] <= done
        return dep in done or dep not in found

    while len(ordered) < len(found):
        ready = [k for k, (_, deps) in found.items() if k not in done and all(satisfied(d) for d in deps)]
        if not ready:  # a cycle cannot happen in a compiled DAG; keep going rather than hang
            ready = [k for k in found if k not in done]
        for key in ready[:1]:
            ordered.append(found[key][0])
            done.add(key)
    return ordered


def run_local(arguments: dict[str, Any], pipeline_root: Path, view=None) -> tuple[str, list[ProducedArtifact]]:
    """Run the whole DAG with kfp.local in subprocesses of this environment; returns (job dir, artifacts).

    With a `view` (labpipe.runview.RunView), everything kfp.local and the tasks print goes to the view
    (stage lines, per-task log files) instead of the terminal, and the tasks emit progress events.
    """
    import contextlib

    from kfp import local
    from labpipe.pipelines.lab_pipeline import lab_pipeline

    pipeline_root.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in pipeline_root.iterdir()}

    def job_dir() -> Path:
        new = sorted((p for p in pipeline_root.iterdir() if p.name not in before and not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime)
        return new[-1] if new else pipeline_root

    # Every temporary file of the run under its own folder, removed at the end: kfp.local's workspace, the KFP
    # launcher's `mktemp -d` per task, the tasks' own temporary files (TMPDIR is inherited by the tasks).
    scratch = pipeline_root / ".tmp"
    (scratch / "workspace").mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
               workspace_root=str(scratch / "workspace"), raise_on_error=True)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, scratch, True)
        stack.enter_context(_environ(TMPDIR=str(scratch)))
        if view is not None:
            from labpipe.runview import task_outputs

            view.task_outputs = lambda task: task_outputs(job_dir(), task)
            stack.enter_context(_environ(LABPIPE_PROGRESS="1", PYTHONUNBUFFERED="1"))
            stack.enter_context(contextlib.redirect_stdout(view))
            stack.enter_context(contextlib.redirect_stderr(view))
            stack.enter_context(_root_logging_to(view))
            stack.callback(view.close)
            stack.push(lambda kind, *_: setattr(view, "interrupted", kind is KeyboardInterrupt))  # before close
        try:
            lab_pipeline(**arguments)
        except RuntimeError as exc:
            if view is None:
                raise UserError(f"the local pipeline run failed: {str(exc).splitlines()[0]}",
                                fix="read the failing task's log above; each stage can be rerun alone with its "
                                    "labpipe command") from None
            stack.close()
            raise failed_run_error(view, str(exc)) from None
    job = job_dir()
    return job.name, collect_artifacts(job)


@contextmanager
def _root_logging_to(stream) -> Iterator[None]:
    """kfp.local logs some lines (e.g. workspace clean-up) through the root logger's own handlers."""
    import logging

    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [logging.StreamHandler(stream)]
    try:
        yield
    finally:
        root.handlers[:] = saved


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def failed_run_error(view, message: str) -> UserError:
    """The failing task named, its own problems repeated, its log pointed to; a bug's traceback tail shown."""
    import sys

    from labpipe.errors import Problem

    failed = view.failed()
    if not failed:
        return UserError(f"the local pipeline run failed: {message.splitlines()[0] if message else '?'}",
                         fix=f"read the logs in {view.logs_dir}")
    stage = failed[0]
    log = stage.log_path or view.logs_dir
    if stage.problems:
        head = Problem(where=f"task {stage.info.task} ({stage.info.label})", rule="task-failed",
                       message=f"stopped on {len(stage.problems)} problem(s) in the input", fix=f"full log: {log}")
        return UserError([head, *stage.problems])
    tail = list(stage.tail)
    start = max((i for i, line in enumerate(tail) if line.startswith("Traceback")), default=max(0, len(tail) - 12))
    print("\n".join(tail[start:]), file=sys.stderr)
    last = next((line for line in reversed(tail) if line.strip()), "no output")
    return UserError(Problem(where=f"task {stage.info.task} ({stage.info.label})", rule="task-failed",
                             message=f"failed: {last.strip()[:300]}",
                             fix=f"the traceback above is the end of {log}; this looks like a bug in labpipe"))


def collect_artifacts(job_dir: Path) -> list[ProducedArtifact]:
    """Every output artifact of a finished local run, read from the tasks' executor_output.json."""
    found = []
    for output in sorted(job_dir.glob("**/executor_output.json"), key=lambda p: p.stat().st_mtime):
        data = json.loads(output.read_text())
        for name, arts in data.get("artifacts", {}).items():
            for art in arts.get("artifacts", []):
                found.append(ProducedArtifact(output.parent.name, name, art.get("uri", ""), art.get("metadata", {})))
    return found


@contextmanager
def talking_to(host: str, token_env: str) -> Iterator[None]:
    """Turn the pipeline server's refusals into one actionable line (no traceback, no token)."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        status = getattr(exc, "status", None) or getattr(getattr(exc, "__context__", None), "status", None)
        reason = f"HTTP {status}" if status else str(exc).splitlines()[0][:200]
        raise UserError(f"{host}: the pipeline server refused or could not be reached ({reason})",
                        fix=f"check --host and that ${token_env} holds a valid token (e.g. `oc whoami -t`)") from None


def kfp_client(host: str, namespace: str | None = None, token_env: str = "KFP_TOKEN"):
    """A kfp.Client for a Kubeflow / OpenShift AI pipeline server (bearer token from `token_env`)."""
    import kfp

    from labpipe import net

    with talking_to(host, token_env):  # its HTTP library reads neither the CA nor the proxy variables
        return kfp.Client(host=host, namespace=namespace, existing_token=os.environ.get(token_env) or None,
                          **net.kfp_client_options(host))


def submit(host: str, arguments: dict[str, Any], *, experiment: str, run_name: str | None = None,
           namespace: str | None = None, package: Path | None = None, token_env: str = "KFP_TOKEN") -> str:
    client = kfp_client(host, namespace, token_env)
    package = package or pipelines_dir() / PIPELINE_YAML
    with talking_to(host, token_env):
        result = client.create_run_from_pipeline_package(
            str(package), arguments=arguments, run_name=run_name or f"lab-{time.strftime('%Y%m%d-%H%M%S')}",
            experiment_name=experiment, namespace=namespace,
        )
    return result.run_id


def preflight(arguments: dict[str, Any], *, network: bool = False) -> None:
    """Before submit/schedule: what can be checked from the submitting machine (the parameters; with
    `network`, the services too). The pipeline's preflight task checks everything again from inside."""
    from labpipe.preflight import PreflightConfig, run_preflight

    run_preflight(PreflightConfig(params=arguments, network=network))


def to_kfp_cron(cron: str) -> str:
    """Kubeflow's scheduler takes 6-field cron (with seconds); accept the usual 5-field form too."""
    fields = cron.split()
    if len(fields) == 5:
        return "0 " + cron.strip()
    if len(fields) == 6:
        return cron.strip()
    raise UserError(f"--cron {cron!r}: expected 5 fields (min hour day month weekday) or 6 (with seconds first)",
                    fix="e.g. --cron '0 3 * * 0' for Sundays at 03:00")


def schedule(host: str, arguments: dict[str, Any], *, cron: str, experiment: str, name: str,
             namespace: str | None = None, package: Path | None = None, token_env: str = "KFP_TOKEN") -> str:
    cron = to_kfp_cron(cron)
    client = kfp_client(host, namespace, token_env)
    package = package or pipelines_dir() / PIPELINE_YAML
    with talking_to(host, token_env):
        exp = client.create_experiment(experiment, namespace=namespace)
        job = client.create_recurring_run(
            experiment_id=exp.experiment_id, job_name=name, cron_expression=cron,
            pipeline_package_path=str(package), params=arguments, max_concurrency=1, no_catchup=True,
            enable_caching=False,
        )
    return job.recurring_run_id
