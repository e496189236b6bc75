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


def compile_pipeline(out: str | Path | None = None, images_out: str | Path | None = None) -> Path:
    """Compile the DAG to KFP IR YAML (deterministic: same code, same bytes); integer defaults are written as
    integers (KFP writes every number as a float: `chunk_tokens: int [Default: 1000.0]`). With `images_out`
    (default: the checkout's manifests/images when compiling the checked-in pipeline), also write the kustomize
    Component that pins the manifests' images (the weekly CronJob) to the same images as the YAML."""
    from kfp import compiler
    from labpipe.components.images import kustomize_images
    from labpipe.pipelines.lab_pipeline import lab_pipeline

    manifests_images = pipelines_dir().parent / "manifests" / "images"
    if images_out is None and out is None and manifests_images.is_dir():
        images_out = manifests_images
    out = Path(out) if out else default_compile_out()
    out.parent.mkdir(parents=True, exist_ok=True)
    _describe_parameters(lab_pipeline.pipeline_spec)
    compiler.Compiler().compile(lab_pipeline, str(out))
    out.write_text(_integer_defaults(out.read_text()))
    if images_out is not None:
        Path(images_out).mkdir(parents=True, exist_ok=True)
        (Path(images_out) / "kustomization.yaml").write_text(kustomize_images())
    return out


def _describe_parameters(spec) -> None:
    """Each pipeline parameter's description (labpipe.runconfig.RunConfig), shown by the KFP dashboards."""
    from labpipe.runconfig import descriptions

    described = descriptions()
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

    from labpipe.runs.runview import StageInfo

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

    With a `view` (labpipe.runs.runview.RunView), everything kfp.local and the tasks print goes to the view
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
            from labpipe.runs.runview import task_outputs

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


def _task_dir(job: Path, task: str) -> Path:
    """A finished task's folder: <job>/<task>, or inside a ParallelFor <job>/for-loop-*/<task> (the latest)."""
    direct = job / task
    if (direct / "executor_output.json").exists():
        return direct
    found = sorted(job.glob(f"*/{task}/executor_output.json"), key=lambda p: p.stat().st_mtime)
    return found[-1].parent if found else direct


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


DEFAULT_PIPELINE_NAME = "labpipe"


def pipeline_version_name(package: Path, pipeline_name: str = DEFAULT_PIPELINE_NAME) -> str:
    """The version name of a compiled pipeline: the pipeline's name and the first 12 hex digits of the sha256 of
    the YAML's bytes (so one content is one version, and a recompiled pipeline is a new one)."""
    import hashlib

    return f"{pipeline_name}-{hashlib.sha256(Path(package).read_bytes()).hexdigest()[:12]}"


def _version_named(client, pipeline_id: str, name: str):
    flt = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
    found = client.list_pipeline_versions(pipeline_id, page_size=10, filter=flt).pipeline_versions or []
    return next((v for v in found if v.display_name == name), None)


def upload_version(client, package: Path, pipeline_name: str = DEFAULT_PIPELINE_NAME) -> tuple[str, str, bool]:
    """Create (or find) the pipeline `pipeline_name` and upload `package` as its version named by its content
    hash (or find that version). Returns (pipeline_id, version_id, uploaded)."""
    import kfp_server_api

    pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:
        created = client._pipelines_api.pipeline_service_create_pipeline(  # the kfp.Client has no empty-create
            pipeline=kfp_server_api.V2beta1Pipeline(
                display_name=pipeline_name,
                description="LAB: taxonomy -> synthetic data -> phased SFT -> MT-Bench, gated (labpipe)",
            )
        )
        pipeline_id = created.pipeline_id
    name = pipeline_version_name(package, pipeline_name)
    existing = _version_named(client, pipeline_id, name)
    if existing is not None:
        return pipeline_id, existing.pipeline_version_id, False
    version = client.upload_pipeline_version(str(package), pipeline_version_name=name, pipeline_id=pipeline_id)
    return pipeline_id, version.pipeline_version_id, True


def latest_version(client, pipeline_name: str = DEFAULT_PIPELINE_NAME) -> tuple[str, str]:
    """(pipeline_id, version_id) of the newest version of `pipeline_name` (uploaded by `labpipe upload`)."""
    pipeline_id = client.get_pipeline_id(pipeline_name)
    versions = []
    if pipeline_id is not None:
        versions = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc").pipeline_versions
    if not versions:
        raise UserError(f"no pipeline {pipeline_name!r} with an uploaded version on this pipeline server",
                        fix="run `labpipe upload --host …` after `labpipe compile` first")
    return pipeline_id, versions[0].pipeline_version_id


def _pipeline_version(client, package: Path | None, pipeline_name: str, version: str) -> tuple[str, str]:
    if version == "latest":
        return latest_version(client, pipeline_name)
    pipeline_id, version_id, _ = upload_version(client, package or pipelines_dir() / PIPELINE_YAML, pipeline_name)
    return pipeline_id, version_id


def upload(host: str, *, pipeline_name: str = DEFAULT_PIPELINE_NAME, package: Path | None = None,
           namespace: str | None = None, token_env: str = "KFP_TOKEN") -> tuple[str, str, str, bool]:
    """`labpipe upload`: (pipeline_id, version name, version_id, uploaded)."""
    client = kfp_client(host, namespace, token_env)
    package = package or pipelines_dir() / PIPELINE_YAML
    with talking_to(host, token_env):
        pipeline_id, version_id, uploaded = upload_version(client, package, pipeline_name)
    return pipeline_id, pipeline_version_name(package, pipeline_name), version_id, uploaded


def submit(host: str, arguments: dict[str, Any], *, experiment: str, run_name: str | None = None,
           namespace: str | None = None, package: Path | None = None, token_env: str = "KFP_TOKEN",
           pipeline_name: str = DEFAULT_PIPELINE_NAME, version: str = "") -> str:
    """One run of the pipeline version of `package` (uploaded if new) or, with version="latest", of the newest
    version of `pipeline_name`: the run is listed under that pipeline in the dashboard."""
    client = kfp_client(host, namespace, token_env)
    with talking_to(host, token_env):
        pipeline_id, version_id = _pipeline_version(client, package, pipeline_name, version)
        exp = client.create_experiment(experiment, namespace=namespace)
        result = client.run_pipeline(
            experiment_id=exp.experiment_id, job_name=run_name or f"lab-{time.strftime('%Y%m%d-%H%M%S')}",
            params=arguments, pipeline_id=pipeline_id, version_id=version_id,
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
             namespace: str | None = None, package: Path | None = None, token_env: str = "KFP_TOKEN",
             pipeline_name: str = DEFAULT_PIPELINE_NAME, version: str = "") -> str:
    cron = to_kfp_cron(cron)
    client = kfp_client(host, namespace, token_env)
    with talking_to(host, token_env):
        pipeline_id, version_id = _pipeline_version(client, package, pipeline_name, version)
        exp = client.create_experiment(experiment, namespace=namespace)
        job = client.create_recurring_run(
            experiment_id=exp.experiment_id, job_name=name, cron_expression=cron, pipeline_id=pipeline_id,
            version_id=version_id, params=arguments, max_concurrency=1, no_catchup=True, enable_caching=False,
        )
    return job.recurring_run_id
