"""A task that Data Science Pipelines gave an MLflow run (MLFLOW_RUN_ID, MLFLOW_EXPERIMENT_ID: injected by the
driver with DSPA spec.mlflow.injectUserEnvVars, opendatahub-io/data-science-pipelines master,
backend/src/v2/common/plugins/mlflow/handler.go) hands it to the training job it submits, so the job's pods
log the SFT stage into that run (labpipe.runs.tracking.stage_run) and not into a tree of their own."""

from __future__ import annotations

from labpipe.runs import tracking
from labpipe.training import jobs


def _spec(**kwargs) -> jobs.JobSpec:
    return jobs.JobSpec(name="labpipe-skills-x", namespace="lab", image="img", train_argv=["--phase", "skills"],
                        **kwargs)  # fmt: skip


def test_the_dsp_run_reaches_the_training_jobs_pods(monkeypatch):
    monkeypatch.setenv("MLFLOW_RUN_ID", "a" * 32)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "7")
    body = jobs.trainjob_manifest(_spec(env=tracking.dsp_run_env()))
    env = {e["name"]: e for e in body["spec"]["trainer"]["env"]}
    assert env["MLFLOW_RUN_ID"] == {"name": "MLFLOW_RUN_ID", "value": "a" * 32}
    assert env["MLFLOW_EXPERIMENT_ID"]["value"] == "7"


def test_without_dsp_the_job_gets_no_run(monkeypatch):
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    assert tracking.dsp_run_env() == {}
