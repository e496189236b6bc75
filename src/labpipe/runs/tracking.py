"""MLflow tracking: one MLflow run per pipeline run, with a nested run per stage.

Stages run in separate processes (KFP pods, or kfp.local subprocesses), so the parent run is found
by its tag `labpipe.pipeline_run_id` (created by the first stage that asks for it). The tracking
server is MLFLOW_TRACKING_URI when set; otherwise a SQLite store in the local run folder.
mlflow is imported lazily: it costs seconds, and most CLI calls never touch it.

Every request to MLflow goes through MLflow's own client (`mlflow_client(uri)`), so MLflow's request-auth providers
add what the server needs (MLFLOW_TRACKING_AUTH=kubernetes-namespaced: the service-account token and the
X-MLFLOW-WORKSPACE header; MLFLOW_TRACKING_TOKEN: a bearer token); nothing in labpipe builds those headers.

Data Science Pipelines' own MLflow integration (DSPA `spec.mlflow`, `injectUserEnvVars: true`) opens a
parent run per pipeline run and a nested run per task, and gives the task its id in MLFLOW_RUN_ID: the
stage then logs into that run and the pipeline's parent is found through it (`dsp_task_run`), so there is
one run tree, not two. Without MLFLOW_RUN_ID, labpipe makes its own tree as described above.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labpipe.runs.stages import canonical as canonical_stage

PIPELINE_RUN_TAG = "labpipe.pipeline_run_id"
ROLE_TAG = "labpipe.role"
STAGE_TAG = "labpipe.stage"
DEFAULT_EXPERIMENT = "labpipe"
def mlflow_client(tracking_uri: str):
    """MLflow's client for `tracking_uri`: the one way labpipe talks to MLflow (its auth providers apply)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def server_problem(tracking_uri: str, experiment: str = DEFAULT_EXPERIMENT) -> tuple[str, str] | None:
    """One authenticated, authorized read through MLflow's client (the experiment `experiment`, missing or
    not); None when it works, else (what went wrong, the fix). Under OpenShift AI's MLflow this needs `get`
    on experiments in the workspace: a search would not do, the plugin answers it with an empty list."""
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client(tracking_uri).get_experiment_by_name(experiment)
        return None
    except MlflowException as exc:
        return explain(tracking_uri, exc)


def explain(tracking_uri: str, exc: Exception) -> tuple[str, str]:
    """(what went wrong, the fix) for an MlflowException from `tracking_uri`: unauthenticated, forbidden,
    unreachable. MLflow's client reports the platform plugin's refusals as INTERNAL_ERROR with the code in
    the message, so both are read."""
    text = str(exc)
    code = str(getattr(exc, "error_code", ""))
    auth = os.environ.get("MLFLOW_TRACKING_AUTH", "")
    if "UNAUTHENTICATED" in code or "UNAUTHENTICATED" in text or " 401" in text:
        sent = f"MLFLOW_TRACKING_AUTH={auth}" if auth else (
            "MLFLOW_TRACKING_TOKEN" if os.environ.get("MLFLOW_TRACKING_TOKEN") else "no credentials")
        return (f"{tracking_uri} refused the request as unauthenticated (HTTP 401; sent with {sent}): "
                f"{_server_said(text)}",
                "OpenShift AI's MLflow: MLFLOW_TRACKING_AUTH=kubernetes-namespaced in the labpipe-mlflow secret "
                "(docs/mlflow-lineage.md); a token-checking proxy: MLFLOW_TRACKING_TOKEN")
    if "PERMISSION_DENIED" in code or "PERMISSION_DENIED" in text or " 403" in text:
        return (f"{tracking_uri} refused the request (HTTP 403): {_server_said(text)}",
                "OpenShift AI's MLflow: bind the Role labpipe-mlflow (manifests/base/rbac.yaml) to the pipeline's "
                "service account in the project; a standalone server: list this host in MLflow's --allowed-hosts")
    if "Workspace" in text:
        return (f"{tracking_uri} needs an MLflow workspace: {_server_said(text)}",
                "MLFLOW_TRACKING_AUTH=kubernetes-namespaced (the pod's namespace), or set MLFLOW_WORKSPACE")
    return (f"the MLflow server does not answer at {tracking_uri} ({_server_said(text)})",
            "check the URL and that the MLflow service is up and reachable from here")


def _server_said(text: str) -> str:
    """The server's own message out of MLflow's exception text (the plugin's JSON error, when there is one)."""
    import re

    found = re.search(r"'message': '([^']*)'", text)
    return found.group(1) if found else _first_line(text)


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:200]


def default_tracking_uri(local_dir: str | Path) -> str:
    """MLFLOW_TRACKING_URI if set, else a SQLite store under `local_dir` (made absolute)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    path = Path(local_dir).absolute()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'mlflow.db'}"


@dataclass
class StageRun:
    """Handle on the nested MLflow run of one stage; thin wrappers that never log secrets by accident."""

    run_id: str
    parent_run_id: str
    client: Any = field(repr=False)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        if items:
            self.client.log_batch(self.run_id, params=items)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v is not None]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)


def _artifact_location(tracking_uri: str) -> str | None:
    """Next to a local SQLite store (MLflow's own default is ./mlruns of whatever directory we run in)."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri[len("sqlite:///"):]).parent / "mlartifacts").absolute().as_uri()
    return None  # a server decides (proxied artifacts)


def _experiment_id(client, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_location(client.tracking_uri))
    except Exception as exc:  # created concurrently by another stage, or refused (no workspace, no permission)
        exp = client.get_experiment_by_name(name)
        if exp is None:
            from labpipe.errors import Problem, UserError

            message, fix = explain(client.tracking_uri, exc)
            raise UserError(Problem(client.tracking_uri, "mlflow", message, fix, field="tracking_uri")) from None
        return exp.experiment_id


# Data Science Pipelines' MLflow integration (opendatahub-io/data-science-pipelines master,
# backend/src/v2/common/plugins/mlflow/handler.go): the driver creates a nested run per task (and per DAG,
# e.g. a ParallelFor or the exit handler's group) tagged mlflow.parentRunId, and injects its id.
DSP_RUN_ENV = "MLFLOW_RUN_ID"
PARENT_TAG = "mlflow.parentRunId"
DSP_PIPELINE_RUN_TAG = "kfp.pipeline_run_id"  # on the parent the API server opens (apiserver/plugins/mlflow)
MAX_DEPTH = 16


def dsp_task_run(client):
    """The run Data Science Pipelines opened for this task (MLFLOW_RUN_ID), or None: not set, or not a run
    of this tracking server (then labpipe makes its own tree, with a warning)."""
    run_id = os.environ.get(DSP_RUN_ENV, "").strip()
    if not run_id:
        return None
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
            raise
        import logging

        logging.getLogger(__name__).warning("%s=%s is not a run of %s: labpipe opens its own runs", DSP_RUN_ENV,
                                            run_id, client.tracking_uri)
        return None


def dsp_run_env() -> dict[str, str]:
    """DSP's MLFLOW_RUN_ID / MLFLOW_EXPERIMENT_ID of this task, for the training job it submits: the job's
    pods log the SFT stage into the task's run instead of opening a tree of their own."""
    return {k: os.environ[k] for k in (DSP_RUN_ENV, "MLFLOW_EXPERIMENT_ID") if os.environ.get(k)}


def dsp_pipeline_parent(client, task_run) -> str:
    """The pipeline's parent run above a DSP task run: up mlflow.parentRunId (through DAG runs) to the top."""
    run = task_run
    for _ in range(MAX_DEPTH):
        parent_id = run.data.tags.get(PARENT_TAG)
        if not parent_id or DSP_PIPELINE_RUN_TAG in run.data.tags:
            return run.info.run_id
        run = client.get_run(parent_id)
    return run.info.run_id


def pipeline_context(client, pipeline_run_id: str, experiment: str = DEFAULT_EXPERIMENT) -> tuple[str, str]:
    """(experiment id, parent run id) of pipeline run `pipeline_run_id`: DSP's when the task has MLFLOW_RUN_ID
    (the parent is tagged as labpipe's pipeline run), else labpipe's own (created on first use)."""
    task = dsp_task_run(client)
    if task is None:
        exp_id = _experiment_id(client, experiment)
        return exp_id, pipeline_run(client, exp_id, pipeline_run_id)
    parent = dsp_pipeline_parent(client, task)
    tags = client.get_run(parent).data.tags if parent != task.info.run_id else task.data.tags
    if tags.get(ROLE_TAG) != "pipeline" or tags.get(PIPELINE_RUN_TAG) != pipeline_run_id:
        from mlflow.entities import RunTag

        client.log_batch(parent, tags=[RunTag(PIPELINE_RUN_TAG, pipeline_run_id), RunTag(ROLE_TAG, "pipeline")])
    return task.info.experiment_id, parent


def pipeline_run(client, experiment_id: str, pipeline_run_id: str, tags: Mapping[str, str] | None = None) -> str:
    """The MLflow run id of the pipeline run `pipeline_run_id`, created on first use."""
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{PIPELINE_RUN_TAG}` = '{pipeline_run_id}' and tags.`{ROLE_TAG}` = 'pipeline'",
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    run = client.create_run(
        experiment_id,
        run_name=f"lab-{pipeline_run_id}",
        tags={PIPELINE_RUN_TAG: pipeline_run_id, ROLE_TAG: "pipeline", **(tags or {})},
    )
    return run.info.run_id


@contextmanager
def stage_run(
    stage: str,
    *,
    pipeline_run_id: str,
    tracking_uri: str,
    experiment: str = DEFAULT_EXPERIMENT,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> Iterator[StageRun]:
    """A nested MLflow run for `stage` under the pipeline run; FINISHED on success, FAILED on error.

    With MLFLOW_RUN_ID (Data Science Pipelines' run for this task), that run is the stage's run: tagged as
    labpipe's, logged into, and closed like labpipe's own (DSP closes it again with the task's state). A
    second, other stage in the same task gets a run nested under it."""
    stage = canonical_stage(stage)
    mlc = mlflow_client(tracking_uri)
    exp_id, parent = pipeline_context(mlc, pipeline_run_id, experiment)
    stage_tags = {PIPELINE_RUN_TAG: pipeline_run_id, ROLE_TAG: "stage", STAGE_TAG: stage,
                  **{k: str(v) for k, v in (tags or {}).items()}}
    task = dsp_task_run(mlc)
    if task is not None and task.data.tags.get(STAGE_TAG, stage) == stage:
        from mlflow.entities import RunTag

        mlc.log_batch(task.info.run_id, tags=[RunTag(k, v) for k, v in stage_tags.items()])
        run_id = task.info.run_id
    else:
        run_id = mlc.create_run(exp_id, run_name=stage, tags={
            PARENT_TAG: task.info.run_id if task is not None else parent, **stage_tags}).info.run_id
    handle = StageRun(run_id, parent, mlc)
    if params:
        handle.log_params(params)
    try:
        yield handle
    except BaseException as exc:
        from labpipe.errors import UserError

        if isinstance(exc, UserError):  # the problems, for the run report (each stated once)
            mlc.set_tag(handle.run_id, "labpipe.error", str(exc)[:5000])
        mlc.set_terminated(handle.run_id, "FAILED")
        raise
    mlc.set_terminated(handle.run_id, "FINISHED")


class NullStageRun:
    """Stands in for StageRun when tracking is off (a stage run alone from the CLI without a server)."""

    run_id = ""
    parent_run_id = ""

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...


@contextmanager
def maybe_stage_run(stage: str, *, pipeline_run_id: str = "", tracking_uri: str = "", **kwargs: Any):
    """stage_run() when a tracking URI is known (argument or MLFLOW_TRACKING_URI), else a NullStageRun.

    Without a pipeline run id (a stage run alone), the stage gets a pipeline run of its own.
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        yield NullStageRun()
        return
    if not pipeline_run_id:
        import uuid

        pipeline_run_id = f"{stage}-{uuid.uuid4().hex[:8]}"
    with stage_run(stage, pipeline_run_id=pipeline_run_id, tracking_uri=uri, **kwargs) as run:
        yield run


def finish_pipeline_run(tracking_uri: str, pipeline_run_id: str, status: str = "FINISHED",
                        experiment: str = DEFAULT_EXPERIMENT) -> str | None:
    """Close the pipeline's parent run with `status` (an MLflow status); see close_pipeline_run."""
    closed = close_pipeline_run(tracking_uri, pipeline_run_id, state=status, experiment=experiment)
    return closed.get("mlflow_run_id") or None


# KFP's final task states (dsl.PipelineTaskFinalStatus.state) -> MLflow run status.
KFP_TO_MLFLOW_STATUS = {
    "SUCCEEDED": "FINISHED", "FINISHED": "FINISHED", "SKIPPED": "FINISHED",
    "FAILED": "FAILED", "SYSTEM_ERROR": "FAILED", "CANCELED": "KILLED", "CANCELLED": "KILLED",
    "CANCELING": "KILLED", "KILLED": "KILLED",
}


def close_pipeline_run(
    tracking_uri: str,
    pipeline_run_id: str,
    *,
    state: str = "SUCCEEDED",
    error: str = "",
    failed_task: str = "",
    experiment: str = DEFAULT_EXPERIMENT,
) -> dict[str, Any]:
    """Close the pipeline's MLflow parent run with the pipeline's real outcome.

    `state` is KFP's final state (SUCCEEDED, FAILED, CANCELED, ...; MLflow's own FINISHED/FAILED/KILLED
    are accepted too). A stage run still RUNNING when the pipeline ends was killed (its pod died before it
    could close it): it is closed FAILED. The failing stages (FAILED stage runs, else `failed_task`) are
    named in the tag `labpipe.failed_stages`, and the error in `labpipe.error`. Returns a summary
    {mlflow_run_id, status, failed_stages, error}; {} when no tracking URI is known.
    The parent is created if no stage ever made it (a pipeline that failed in its first task).
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri or not pipeline_run_id:
        return {}
    from mlflow.entities import RunTag

    status = KFP_TO_MLFLOW_STATUS.get(state.upper().removeprefix("PIPELINE_STATE_"), "FAILED")
    client = mlflow_client(uri)
    exp_id, parent = pipeline_context(client, pipeline_run_id, experiment)
    stages = client.search_runs(
        [exp_id],
        filter_string=f"tags.`{PIPELINE_RUN_TAG}` = '{pipeline_run_id}' and tags.`{ROLE_TAG}` = 'stage'",
        max_results=500,
    )
    failed: list[str] = []
    for run in sorted(stages, key=lambda r: r.info.start_time or 0):
        name = canonical_stage(run.data.tags.get(STAGE_TAG, run.info.run_name or "?"))
        if run.info.status in ("RUNNING", "SCHEDULED"):
            client.set_tag(run.info.run_id, "labpipe.error", "the task ended without closing its run (pod killed?)")
            client.set_terminated(run.info.run_id, "FAILED" if status != "FINISHED" else "KILLED")
            failed.append(name)
        elif run.info.status in ("FAILED", "KILLED"):
            failed.append(name)
    if status == "FINISHED":
        failed = []  # a retried task that failed once and then succeeded does not fail the pipeline
    elif not failed and failed_task:
        failed = [failed_task]
    tags = {"labpipe.status": state.upper(), "labpipe.failed_stages": ",".join(dict.fromkeys(failed))}
    if error:
        tags["labpipe.error"] = error[:5000]
    client.log_batch(parent, tags=[RunTag(k, v) for k, v in tags.items()])
    client.set_terminated(parent, status)
    return {"mlflow_run_id": parent, "status": status, "failed_stages": list(dict.fromkeys(failed)), "error": error}


def finalize_from_kfp_status(pipeline_run_id: str, tracking_uri: str, status: Mapping[str, Any]) -> dict[str, Any]:
    """close_pipeline_run from the fields of KFP's PipelineTaskFinalStatus (the exit handler's argument)."""
    return close_pipeline_run(
        tracking_uri,
        pipeline_run_id,
        state=str(status.get("state") or "FAILED"),
        error=str(status.get("error_message") or ""),
        failed_task=str(status.get("pipeline_task_name") or ""),
    )
