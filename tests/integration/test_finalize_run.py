"""The exit task closes the pipeline's MLflow parent run with the real outcome: tiny pipelines wrapped in
dsl.ExitHandler run through kfp.local (real subprocesses) against a real `mlflow server`, one that
succeeds and one whose second task fails."""

# no `from __future__ import annotations`: kfp reads the components' annotations as types
import pytest
from kfp import dsl, local
from labpipe.components.finalize_run.component import finalize_run
from mlflow.tracking import MlflowClient

from labpipe.runs import tracking


@dsl.component(base_image="python:3.11")
def stage_ok(run_id: str, tracking_uri: str) -> str:
    from labpipe.runs.tracking import stage_run

    with stage_run("taxonomy_diff", pipeline_run_id=run_id, tracking_uri=tracking_uri) as run:
        run.log_metrics({"leaves": 2})
    return run.run_id


@dsl.component(base_image="python:3.11")
def stage_fails(run_id: str, tracking_uri: str, after: str):
    from labpipe.runs.tracking import stage_run

    with stage_run("critique_filter", pipeline_run_id=run_id, tracking_uri=tracking_uri):
        raise RuntimeError("the judge answered 503 three times")


@dsl.pipeline
def succeeding(tracking_uri: str):
    final = finalize_run(run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, tracking_uri=tracking_uri)
    with dsl.ExitHandler(final, name="lab"):
        stage_ok(run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, tracking_uri=tracking_uri)


@dsl.pipeline
def failing(tracking_uri: str):
    final = finalize_run(run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, tracking_uri=tracking_uri)
    with dsl.ExitHandler(final, name="lab"):
        first = stage_ok(run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, tracking_uri=tracking_uri)
        stage_fails(run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, tracking_uri=tracking_uri, after=first.output)


def _parent_runs(client: MlflowClient) -> dict[str, object]:
    exp = client.get_experiment_by_name(tracking.DEFAULT_EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{tracking.ROLE_TAG}` = 'pipeline'")
    return {r.data.tags[tracking.PIPELINE_RUN_TAG]: r for r in runs}


@pytest.fixture
def kfp_local(tmp_path):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"),
               raise_on_error=False)


def test_exit_handler_closes_the_parent_run_finished(kfp_local, mlflow_server_url):
    client = MlflowClient(tracking_uri=mlflow_server_url)
    before = set(_parent_runs(client)) if client.get_experiment_by_name(tracking.DEFAULT_EXPERIMENT) else set()
    succeeding(tracking_uri=mlflow_server_url)
    [new] = [r for pid, r in _parent_runs(client).items() if pid not in before]
    assert new.info.status == "FINISHED"
    assert new.data.tags["labpipe.status"] == "SUCCEEDED"
    assert new.data.tags["labpipe.failed_stages"] == ""


def test_exit_handler_closes_the_parent_run_failed_naming_the_stage(kfp_local, mlflow_server_url):
    client = MlflowClient(tracking_uri=mlflow_server_url)
    before = set(_parent_runs(client)) if client.get_experiment_by_name(tracking.DEFAULT_EXPERIMENT) else set()
    failing(tracking_uri=mlflow_server_url)
    [new] = [r for pid, r in _parent_runs(client).items() if pid not in before]
    assert new.info.status == "FAILED"
    assert new.data.tags["labpipe.status"] == "FAILED"
    assert new.data.tags["labpipe.failed_stages"] == "critique_filter"  # the stage, not KFP's exit-handler-1
    assert "exit-handler" in new.data.tags["labpipe.error"]  # KFP's own message is kept as well
    stages = {r.data.tags[tracking.STAGE_TAG]: r.info.status for r in client.search_runs(
        [new.info.experiment_id],
        filter_string=f"tags.`{tracking.PIPELINE_RUN_TAG}` = '{new.data.tags[tracking.PIPELINE_RUN_TAG]}' "
                      f"and tags.`{tracking.ROLE_TAG}` = 'stage'")}
    assert stages == {"taxonomy_diff": "FINISHED", "critique_filter": "FAILED"}


def test_a_stage_left_running_by_a_killed_pod_is_closed_failed(mlflow_server_url):
    # A pod killed mid-stage never reaches stage_run's own FAILED: its run stays RUNNING.
    client = MlflowClient(tracking_uri=mlflow_server_url)
    exp_id = tracking._experiment_id(client, tracking.DEFAULT_EXPERIMENT)
    parent = tracking.pipeline_run(client, exp_id, "kfp-killed")
    killed = client.create_run(exp_id, run_name="skill_sft", tags={
        "mlflow.parentRunId": parent, tracking.PIPELINE_RUN_TAG: "kfp-killed", tracking.ROLE_TAG: "stage",
        tracking.STAGE_TAG: "skill_sft"})
    closed = tracking.finalize_from_kfp_status("kfp-killed", mlflow_server_url, {
        "state": "FAILED", "error_message": "Task exit-handler-1 failed.", "pipeline_task_name": "exit-handler-1"})
    assert closed["status"] == "FAILED" and closed["failed_stages"] == ["skill_sft"]
    assert client.get_run(killed.info.run_id).info.status == "FAILED"
    assert "pod killed" in client.get_run(killed.info.run_id).data.tags["labpipe.error"]
    assert client.get_run(parent).info.status == "FAILED"
