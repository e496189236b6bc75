"""labpipe.runs.tracking against a real `mlflow server` process (SQLite store, artifacts proxied to S3)."""

from __future__ import annotations

import boto3
import pytest
from mlflow.tracking import MlflowClient

from labpipe.runs import tracking


def test_pipeline_run_with_nested_stage_runs(mlflow_server_url, s3_endpoint, tmp_path, monkeypatch):
    # The client needs no S3 credentials: the server proxies artifacts.
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    report = tmp_path / "report.md"
    report.write_text("# yield\nkept 3 of 4\n")

    with tracking.stage_run("taxonomy_diff", pipeline_run_id="kfp-123", tracking_uri=mlflow_server_url,
                            params={"base": "origin/main"}) as diff_run:
        diff_run.log_metrics({"leaves_changed": 3})
    with tracking.stage_run("critique_filter", pipeline_run_id="kfp-123", tracking_uri=mlflow_server_url) as crit:
        crit.log_metrics({"kept": 3, "dropped": 1})
        crit.log_artifact(report, "reports")

    client = MlflowClient(tracking_uri=mlflow_server_url)
    assert diff_run.parent_run_id == crit.parent_run_id  # one pipeline run, found by tag
    parent = client.get_run(diff_run.parent_run_id)
    assert parent.data.tags[tracking.ROLE_TAG] == "pipeline"
    for stage in (diff_run, crit):
        run = client.get_run(stage.run_id)
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED"
    assert client.get_run(diff_run.run_id).data.params == {"base": "origin/main"}
    assert client.get_run(crit.run_id).data.metrics == {"kept": 3.0, "dropped": 1.0}

    # The artifact went through the server into the S3 bucket.
    keys = [o["Key"] for o in boto3.client(
        "s3", endpoint_url=s3_endpoint, aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1"
    ).list_objects_v2(Bucket="mlflow").get("Contents", [])]
    assert any(k.endswith("reports/report.md") for k in keys), keys

    assert tracking.finish_pipeline_run(mlflow_server_url, "kfp-123") == parent.info.run_id
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"


def test_failed_stage_is_marked_failed(mlflow_server_url):
    with pytest.raises(ValueError):
        with tracking.stage_run("seed_extraction", pipeline_run_id="kfp-err", tracking_uri=mlflow_server_url) as run:
            raise ValueError("boom")
    assert MlflowClient(tracking_uri=mlflow_server_url).get_run(run.run_id).info.status == "FAILED"


def test_tracking_off_without_uri():
    with tracking.maybe_stage_run("generate") as run:
        run.log_metrics({"x": 1})  # no server, no error
    assert run.run_id == ""
