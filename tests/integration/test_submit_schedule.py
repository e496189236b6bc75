"""`labpipe submit` / `labpipe schedule` through the real kfp.Client over HTTP, against a fake KFP API
server that records requests (tests/support/fake_kfp.py): what reaches the pipeline server is our
compiled pipeline, the parameters, the experiment and a 6-field cron."""

from __future__ import annotations

import pytest
import yaml

from labpipe.cli import main
from labpipe.paths import pipelines_dir
from tests.support.fake_kfp import FakeKFPServer


@pytest.fixture
def kfp_server(monkeypatch):
    with FakeKFPServer(token="t0ken") as server:
        monkeypatch.setenv("KFP_TOKEN", "t0ken")
        yield server


def _shipped_spec() -> dict:
    return next(yaml.safe_load_all((pipelines_dir() / "lab_pipeline.yaml").read_text()))


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
    # the IR travels whole: the pipeline spec and the kfp-kubernetes platform spec (secrets, GPUs)
    assert run["pipeline_spec"]["pipeline_spec"] == _shipped_spec()
    assert "kubernetes" in run["pipeline_spec"]["platform_spec"]["platforms"]
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
