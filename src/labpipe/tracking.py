"""MLflow tracking: one MLflow run per pipeline run, with a nested run per stage.

Stages run in separate processes (KFP pods, or kfp.local subprocesses), so the parent run is found
by its tag `labpipe.pipeline_run_id` (created by the first stage that asks for it). The tracking
server is MLFLOW_TRACKING_URI when set; otherwise a SQLite store in the local run folder.
mlflow is imported lazily: it costs seconds, and most CLI calls never touch it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PIPELINE_RUN_TAG = "labpipe.pipeline_run_id"
ROLE_TAG = "labpipe.role"
DEFAULT_EXPERIMENT = "labpipe"


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
    except Exception:  # created concurrently by another stage
        return client.get_experiment_by_name(name).experiment_id


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
    """A nested MLflow run for `stage` under the pipeline run; FINISHED on success, FAILED on error."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp_id = _experiment_id(client, experiment)
    parent = pipeline_run(client, exp_id, pipeline_run_id)
    run = client.create_run(
        exp_id,
        run_name=stage,
        tags={
            "mlflow.parentRunId": parent,
            PIPELINE_RUN_TAG: pipeline_run_id,
            ROLE_TAG: "stage",
            "labpipe.stage": stage,
            **{k: str(v) for k, v in (tags or {}).items()},
        },
    )
    handle = StageRun(run.info.run_id, parent, client)
    if params:
        handle.log_params(params)
    try:
        yield handle
    except BaseException:
        client.set_terminated(handle.run_id, "FAILED")
        raise
    client.set_terminated(handle.run_id, "FINISHED")


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
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    run_id = pipeline_run(client, exp.experiment_id, pipeline_run_id)
    client.set_terminated(run_id, status)
    return run_id
