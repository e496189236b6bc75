"""The compiled pipeline takes MLflow from a parameter or the optional `labpipe-mlflow` secret on every
task, and publish gets the run name and the (off by default) Kubeflow Model Registry URL; plus the pure
parts of lineage: model references and the `labpipe runs` table."""

from __future__ import annotations

from labpipe.runs import history, lineage
from tests.support.compiled import executors, pipeline_spec


def _docs() -> tuple[dict, dict]:
    return pipeline_spec(), executors()


def test_every_task_can_take_mlflow_from_the_secret():
    spec, executors = _docs()
    for name in spec["deploymentSpec"]["executors"]:
        # a fixed name (like the CA and proxy settings): parameterised secret names fail inside ParallelFor on
        # OpenShift (kubeflow/pipelines#13078), and the generation shards need MLflow too
        mounts = [m for m in executors.get(name, {}).get("secretAsEnv", []) if m.get("secretName") == "labpipe-mlflow"]
        assert mounts, f"{name}: no labpipe-mlflow secret"
        [mount] = mounts
        assert mount["optional"] is True  # a plain laptop-to-server setup passes mlflow_tracking_uri instead
        assert {e["envVar"] for e in mount["keyToEnv"]} >= {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN",
                                                             "MLFLOW_TRACKING_AUTH"}
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["model_registry"]["defaultValue"] == ""  # the Model Registry is opt-in


def test_publish_gets_the_run_name_and_model_registry():
    spec, _ = _docs()
    [inner] = [task["inputs"]["parameters"] for comp in spec["components"].values()
               for name, task in comp.get("dag", {}).get("tasks", {}).items() if name == "publish-model"]
    assert inner["pipeline_run_name"]["runtimeValue"]["constant"] == "{{$.pipeline_job_name}}"
    assert inner["model_registry"]["componentInputParameter"] == "pipelinechannel--model_registry"


def test_model_references():
    assert lineage.parse_model_ref("labpipe-model@production") == ("labpipe-model", "production", "")
    assert lineage.parse_model_ref("models:/labpipe-model/3") == ("labpipe-model", "", "3")
    assert lineage.parse_model_ref("models:/labpipe-model@champion") == ("labpipe-model", "champion", "")
    assert lineage.parse_model_ref("labpipe-model/3") == ("labpipe-model", "", "3")  # the old --model form
    for run_ids in ("5f0c1d2e3a4b5c6d7e8f9a0b1c2d3e4f", "d6b2c3f0-1a2b-4c3d-9e8f-0a1b2c3d4e5f", "2918771"):
        assert lineage.parse_model_ref(run_ids) is None


def test_runs_table_and_summary():
    tags = {"lineage.taxonomy_diff.metadata.taxonomy_commit": "0123456789abcdef", "lineage.taxonomy_diff."
            "metadata.leaves": "3", "lineage.synthetic_generation.metadata.requests_sent": "12.0",
            "lineage.mt_bench_eval.metadata.publish": "False"}
    row = history.run_summary(tags)
    assert row == {"taxonomy_commit": "0123456789ab", "leaves_changed": "3", "requests_sent": "12",
                   "requests_reused": "", "gate": "rejected", "published_version": "", "failed_stages": ""}
    table = history.format_runs([{"pipeline_run_id": "r1", "status": "FINISHED", **row}])
    header, line = table.splitlines()
    assert header.split()[:3] == ["run", "name", "status"] and line.split()[:3] == ["r1", "-", "FINISHED"]
    assert history.format_runs([]) == "no pipeline runs found"
