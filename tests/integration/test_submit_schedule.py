"""`labpipe submit` / `labpipe schedule` / `labpipe upload` through the real kfp.Client over HTTP, against a fake
KFP API server that records requests and refuses duplicate pipelines/versions and unknown versions as the real one
does (tests/support/fake_kfp.py, kubeflow/pipelines master backend/src/apiserver/storage/pipeline_store.go): what
reaches the pipeline server is our compiled pipeline as a version of the named pipeline (one per content, its hash
in the version name), runs and recurring runs of that version (so the dashboard lists them under the pipeline),
the parameters, the experiment and a 6-field cron."""

from __future__ import annotations

import pytest
from labpipe.pipelines.runner import pipeline_version_name

from labpipe.cli import main
from tests.support.compiled import compiled_path, pipeline_spec
from tests.support.fake_kfp import FakeKFPServer


@pytest.fixture
def kfp_server(monkeypatch):
    with FakeKFPServer(token="t0ken") as server:
        monkeypatch.setenv("KFP_TOKEN", "t0ken")
        yield server


def test_submit_sends_the_compiled_pipeline_and_parameters(kfp_server, capsys):
    rc = main(["submit", "--host", kfp_server.url, "--experiment", "weekly",
               "--param", "taxonomy=https://git.example.internal/taxonomy.git",
               "--param", "base_model=s3://models/granite", "--param", "max_questions=10",
               "--param", 'node_selector={"gpu": "h100"}'])
    assert rc == 0
    assert "submitted run run-1" in capsys.readouterr().out
    [exp] = kfp_server.bodies("POST", "/apis/v2beta1/experiments")
    assert exp["display_name"] == "weekly"
    [run] = kfp_server.bodies("POST", "/apis/v2beta1/runs")
    assert run["experiment_id"] == "exp-1"
    # a run of the pipeline version holding the shipped YAML, not an anonymous spec: listed under "labpipe"
    [pipeline] = kfp_server.pipelines.values()
    [version] = kfp_server.versions[pipeline["pipeline_id"]]
    assert pipeline["display_name"] == "labpipe" and "pipeline_spec" not in run
    assert version["display_name"] == pipeline_version_name(compiled_path())
    assert run["pipeline_version_reference"] == {"pipeline_id": pipeline["pipeline_id"],
                                                 "pipeline_version_id": version["pipeline_version_id"]}
    assert version["pipeline_spec"] == pipeline_spec()
    params = run["runtime_config"]["parameters"]
    assert params["taxonomy"] == "https://git.example.internal/taxonomy.git"
    assert params["max_questions"] == 10 and params["node_selector"] == {"gpu": "h100"}


def test_schedule_creates_a_weekly_recurring_run(kfp_server, capsys):
    rc = main(["schedule", "--host", kfp_server.url, "--cron", "0 3 * * 0", "--name", "weekly-retrain",
               "--param", "taxonomy=/srv/taxonomy", "--param", "base_model=s3://models/granite"])
    assert rc == 0, capsys.readouterr().err
    [job] = kfp_server.bodies("POST", "/apis/v2beta1/recurringruns")
    assert job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 0"  # KFP's scheduler wants seconds first
    assert job["max_concurrency"] == "1" or job["max_concurrency"] == 1
    assert job["no_catchup"] is True
    assert job["runtime_config"]["parameters"]["base_model"] == "s3://models/granite"
    [pipeline] = kfp_server.pipelines.values()
    assert job["pipeline_version_reference"]["pipeline_id"] == pipeline["pipeline_id"]


def test_upload_makes_one_version_per_compiled_content(kfp_server, tmp_path, capsys):
    shipped = compiled_path()
    assert main(["upload", "--host", kfp_server.url]) == 0
    first = capsys.readouterr().out
    assert main(["upload", "--host", kfp_server.url]) == 0  # same content: found, not uploaded again
    assert "already there" in capsys.readouterr().out and "uploaded" in first
    changed = tmp_path / "lab_pipeline.yaml"
    changed.write_text(shipped.read_text() + "# recompiled\n")
    assert main(["upload", "--host", kfp_server.url, "--package", str(changed)]) == 0
    [pipeline] = kfp_server.pipelines.values()
    names = [v["display_name"] for v in kfp_server.versions[pipeline["pipeline_id"]]]
    digest = pipeline_version_name(shipped).rsplit("-", 1)[1]
    assert names == [f"labpipe-{digest}", pipeline_version_name(changed)] and len(digest) == 12
    # the weekly CronJob's form: the newest uploaded version, no package
    assert main(["submit", "--host", kfp_server.url, "--pipeline-version", "latest", "--param", "taxonomy=x",
                 "--param", "base_model=s3://m/g"]) == 0
    [run] = kfp_server.bodies("POST", "/apis/v2beta1/runs")
    assert run["pipeline_version_reference"]["pipeline_version_id"] == kfp_server.versions[
        pipeline["pipeline_id"]][-1]["pipeline_version_id"]


def test_latest_without_an_uploaded_version_is_a_user_error(kfp_server, capsys):
    assert main(["submit", "--host", kfp_server.url, "--pipeline-version", "latest", "--param", "taxonomy=x",
                 "--param", "base_model=s3://m/g"]) == 1
    err = capsys.readouterr().err
    assert "labpipe upload" in err and "Traceback" not in err
    assert not kfp_server.bodies("POST", "/apis/v2beta1/runs")


def test_the_fake_refuses_what_kfp_refuses(kfp_server):
    """Duplicate pipeline and version names are 409 AlreadyExists; a run of an unknown version is 404."""
    import kfp
    import kfp_server_api
    from kfp_server_api.exceptions import ApiException

    client = kfp.Client(host=kfp_server.url, existing_token="t0ken")
    package = str(compiled_path())
    created = client._pipelines_api.pipeline_service_create_pipeline(
        pipeline=kfp_server_api.V2beta1Pipeline(display_name="p"))
    with pytest.raises(ApiException) as dup:
        client._pipelines_api.pipeline_service_create_pipeline(pipeline=kfp_server_api.V2beta1Pipeline(display_name="p"))
    assert dup.value.status == 409
    client.upload_pipeline_version(package, pipeline_version_name="v1", pipeline_id=created.pipeline_id)
    with pytest.raises(ApiException) as dup_version:
        client.upload_pipeline_version(package, pipeline_version_name="v1", pipeline_id=created.pipeline_id)
    assert dup_version.value.status == 409
    exp = client.create_experiment("e")
    with pytest.raises(ApiException) as unknown:
        client.run_pipeline(exp.experiment_id, "r", pipeline_id=created.pipeline_id, version_id="nope")
    assert unknown.value.status == 404


def test_unknown_parameter_and_bad_cron_are_user_errors(kfp_server, capsys):
    assert main(["submit", "--host", kfp_server.url, "--param", "taxonmy=x"]) == 1
    assert "unknown pipeline parameter(s): taxonmy" in capsys.readouterr().err
    assert main(["schedule", "--host", kfp_server.url, "--cron", "weekly", "--param", "taxonomy=x"]) == 1
    assert "expected 5 fields" in capsys.readouterr().err
    assert not kfp_server.bodies("POST", "/apis/v2beta1/runs")


def test_wrong_token_is_a_user_error(kfp_server, monkeypatch, capsys):
    import kfp.client.client

    monkeypatch.setattr(kfp.client.client.time, "sleep", lambda s: None)  # kfp retries healthz 5 times
    monkeypatch.setenv("KFP_TOKEN", "wrong")
    assert main(["submit", "--host", kfp_server.url, "--param", "taxonomy=x", "--param", "base_model=y"]) == 1
    err = capsys.readouterr().err
    assert "KFP_TOKEN" in err and "Traceback" not in err and "wrong" not in err


def test_parameters_are_checked_before_anything_is_submitted(kfp_server, capsys):
    rc = main(["schedule", "--host", kfp_server.url, "--cron", "0 3 * * 0",
               "--param", "taxonomy=https://git.example.internal/taxonomy.git", "--param", "base_model=s3://m/g",
               "--param", "max_questions=500", "--param", "training_preset=huge", "--param", "scope=all"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert "[max_questions]" in err and "[training_preset]" in err and "[scope]" in err
    assert not kfp_server.bodies("POST", "/apis/v2beta1/recurringruns")
    assert not kfp_server.bodies("POST", "/apis/v2beta1/experiments")
    # --preflight off submits what it is given (the pipeline's own preflight task would then stop the run)
    assert main(["submit", "--host", kfp_server.url, "--preflight", "off", "--param", "taxonomy=x",
                 "--param", "base_model=y", "--param", "max_questions=500"]) == 0
