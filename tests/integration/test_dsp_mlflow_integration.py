"""Data Science Pipelines' own MLflow integration (DSPA `spec.mlflow`, injectUserEnvVars: true): one run
tree, not two. Against a real `mlflow server`; DSP's side is played with MLflow's client exactly as its
code does it (opendatahub-io/data-science-pipelines master 537860c):

- the API server, before the run starts (backend/src/apiserver/plugins/mlflow/handler.go,
  OnBeforeRunCreation): the experiment (DSPO's default name `AIP-default`,
  data-science-pipelines-operator controllers/dspipeline_params.go) and a parent run named after the KFP run,
  tagged `kfp.pipeline_run_id`, `kfp.pipeline_run_url`, `mlflow.kfp.idempotencyKey` (util.go BuildKFPTags);
- the driver, per DAG (e.g. the exit handler's group, a ParallelFor) and per task
  (backend/src/v2/driver/dag.go, container.go; v2/common/plugins/mlflow/handler.go OnTaskStart): a nested
  run named after the task, tagged only `mlflow.parentRunId` = the run of the DAG it is in;
- the task's container gets MLFLOW_RUN_ID (its nested run), MLFLOW_EXPERIMENT_ID, MLFLOW_TRACKING_URI
  (and MLFLOW_WORKSPACE, MLFLOW_TRACKING_AUTH on a workspace-enabled MLflow) (RetrieveUserContainerEnvVars).
"""

from __future__ import annotations

import json
import uuid

import pytest
from mlflow.tracking import MlflowClient

from labpipe.registry.publish import publish_model
from labpipe.runs import lineage, tracking

pytestmark = [pytest.mark.integration]


class DspRun:
    """One KFP run as DSP records it in MLflow."""

    def __init__(self, uri: str, experiment: str = "AIP-default"):
        self.client = MlflowClient(tracking_uri=uri)
        self.uri = uri
        self.kfp_run_id = str(uuid.uuid4())
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        self.parent = self.client.create_run(
            self.experiment_id,
            run_name=f"weekly-{self.kfp_run_id[:8]}",
            tags={
                "kfp.pipeline_run_id": self.kfp_run_id,
                "mlflow.kfp.idempotencyKey": self.kfp_run_id,
                "kfp.pipeline_run_url": f"https://dashboard/develop-train/pipelines/runs/lab/runs/{self.kfp_run_id}",
            },
        ).info.run_id

    def nested(self, name: str, parent: str) -> str:
        return self.client.create_run(
            self.experiment_id, run_name=name, tags={tracking.PARENT_TAG: parent}
        ).info.run_id

    def enter_task(self, monkeypatch, run_id: str) -> None:
        """The env the driver injects into the task's container."""
        monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
        monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", self.experiment_id)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", self.uri)


def test_stages_log_into_dsps_runs_and_find_its_parent(mlflow_server_url, monkeypatch, tmp_path):
    dsp = DspRun(mlflow_server_url)
    pid, uri = dsp.kfp_run_id, mlflow_server_url
    group = dsp.nested("exit-handler-1", dsp.parent)
    diff_task, publish_task = dsp.nested("taxonomy-diff", group), dsp.nested("publish-model", group)
    finalize_task = dsp.nested("finalize-run", dsp.parent)

    dsp.enter_task(monkeypatch, diff_task)
    diff = tmp_path / "diff.json"
    diff.write_text('{"leaves": []}')
    with tracking.maybe_stage_run("taxonomy_diff", pipeline_run_id=pid, tracking_uri=uri) as run:
        run.log_metrics({"leaves": 3})
    lineage.record(
        "taxonomy_diff",
        {"leaves_changed": 3},
        pipeline_run_id=pid,
        tracking_uri=uri,
        outputs={"diff": str(diff)},
    )
    assert (run.run_id, run.parent_run_id) == (diff_task, dsp.parent)

    dsp.enter_task(monkeypatch, publish_task)
    decision = tmp_path / "decision.json"
    decision.write_text(
        json.dumps(
            {"publish": True, "reasons": ["better"], "candidate": 7.0, "candidate_scores": {"overall": 7.0}}
        )
    )
    name = f"labpipe-model-{uuid.uuid4().hex[:6]}"
    version = publish_model(
        str(tmp_path / "model"),
        str(decision),
        name,
        run_id=pid,
        tracking_uri=uri,
        source_uri="s3://labpipe/model",
    )
    lineage.record(
        "publish_model",
        {"registered_model": name, "version": version, "alias": "production"},
        pipeline_run_id=pid,
        tracking_uri=uri,
    )

    dsp.enter_task(monkeypatch, finalize_task)
    closed = tracking.close_pipeline_run(uri, pid, state="SUCCEEDED")
    assert closed["mlflow_run_id"] == dsp.parent

    client = MlflowClient(tracking_uri=uri)
    # one tree: labpipe made no parent of its own, in no experiment, and no stage run beside DSP's task runs
    everywhere = [e.experiment_id for e in client.search_experiments()]
    mine = client.search_runs(everywhere, filter_string=f"tags.`{tracking.PIPELINE_RUN_TAG}` = '{pid}'")
    assert {r.info.run_id for r in mine} == {dsp.parent, diff_task, publish_task}, [
        (r.info.run_name, r.data.tags) for r in mine
    ]
    assert client.get_run(diff_task).data.metrics == {"leaves": 3.0}
    assert client.get_run(diff_task).data.tags[tracking.STAGE_TAG] == "taxonomy_diff"
    assert client.get_run(diff_task).inputs.dataset_inputs  # the diff, on the task's run
    parent = client.get_run(dsp.parent)
    assert parent.data.tags[tracking.ROLE_TAG] == "pipeline" and parent.info.status == "FINISHED"
    assert client.get_model_version(name, version).run_id == publish_task
    # and lineage follows the tree DSP opened, from the model or from the KFP run id
    for target in (f"{name}@production", pid):
        described = lineage.describe_any(uri, target)
        assert described.mlflow_run_id == dsp.parent
        assert {"taxonomy_diff", "publish_model"} <= set(described.stages)


def test_a_second_stage_in_one_task_nests_under_the_tasks_run(mlflow_server_url, monkeypatch):
    dsp = DspRun(mlflow_server_url)
    task = dsp.nested("mt-bench-eval", dsp.parent)
    dsp.enter_task(monkeypatch, task)
    with tracking.maybe_stage_run(
        "mt_bench_eval", pipeline_run_id=dsp.kfp_run_id, tracking_uri=mlflow_server_url
    ) as a:
        pass
    with tracking.maybe_stage_run(
        "quality_gate", pipeline_run_id=dsp.kfp_run_id, tracking_uri=mlflow_server_url
    ) as b:
        pass
    assert a.run_id == task
    run = MlflowClient(tracking_uri=mlflow_server_url).get_run(b.run_id)
    assert run.data.tags[tracking.PARENT_TAG] == task and run.data.tags[tracking.STAGE_TAG] == "quality_gate"


def test_without_mlflow_run_id_labpipe_opens_its_own_tree(mlflow_server_url, monkeypatch):
    monkeypatch.setenv("MLFLOW_RUN_ID", "0" * 32)  # not a run of this server: labpipe's own tree, as before
    pid = f"kfp-{uuid.uuid4().hex[:8]}"
    with tracking.maybe_stage_run(
        "taxonomy_diff", pipeline_run_id=pid, tracking_uri=mlflow_server_url
    ) as run:
        pass
    client = MlflowClient(tracking_uri=mlflow_server_url)
    parent = client.get_run(run.parent_run_id)
    assert parent.data.tags[tracking.ROLE_TAG] == "pipeline" and parent.info.run_name == f"lab-{pid}"
    assert client.get_experiment(parent.info.experiment_id).name == tracking.DEFAULT_EXPERIMENT
