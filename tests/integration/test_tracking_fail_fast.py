"""Issue 20, items 5 and 9: an MLflow that is not there is one line in seconds, in every command that reads it.

`labpipe runs|report|lineage --tracking-uri http://…:9` retried for ~248 s (MLflow's client defaults), then printed
tracebacks or "not found in the model registry"; `runs --tracking-uri sqlite:///missing/x.db` created the folder
and an empty database and said "no pipeline runs". `lineage labpipe-model` looked the name up as a run id.
Real MLflow: its client against a closed 127.0.0.1 port, and a real SQLite store with a registered model
(mlflow/mlflow, mlflow/utils/rest_utils.py reads MLFLOW_HTTP_REQUEST_MAX_RETRIES/TIMEOUT per request).
"""

from __future__ import annotations

import socket

import pytest

from labpipe.cli import main

pytestmark = pytest.mark.timeout(120)  # MLflow's own retries would take ~4 minutes


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "command",
    [["runs"], ["report", "0123456789abcdef0123456789abcdef"], ["lineage", "labpipe-model@production"]],
)
def test_an_unreachable_server_is_one_line(command, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"http://127.0.0.1:{_closed_port()}"
    assert main([*command, "--tracking-uri", uri]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "the MLflow server does not answer" in err and uri in err
    assert list(tmp_path.iterdir()) == []  # no report.html, nothing else


@pytest.mark.parametrize("command", [["runs"], ["report", "x"], ["lineage", "x"]])
def test_a_missing_sqlite_store_is_an_error_not_a_new_database(command, capsys, tmp_path):
    uri = f"sqlite:///{tmp_path}/missing/x.db"
    assert main([*command, "--tracking-uri", uri]) == 1
    err = capsys.readouterr().err
    assert f"no MLflow store at {tmp_path}/missing/x.db" in err and "Traceback" not in err
    assert not (tmp_path / "missing").exists()


def test_lineage_of_a_bare_model_name_suggests_name_at_alias(capsys, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("labpipe-model")
    version = client.create_model_version("labpipe-model", source=str(tmp_path))
    client.set_registered_model_alias("labpipe-model", "production", version.version)
    assert main(["lineage", "labpipe-model", "--tracking-uri", uri]) == 1
    err = capsys.readouterr().err
    assert "labpipe-model: error: lineage-target: is a registered model, not one version" in err
    assert "labpipe-model@production" in err and "Traceback" not in err


def test_the_exit_task_against_an_unreachable_server_is_one_problem(monkeypatch):
    """finalize_run (the pipeline's exit task) went through MLflow's client retries (~258 s) and ended in a
    traceback; now a bounded close: one UserError naming the server (the component prints it as one line)."""
    from labpipe.errors import UserError
    from labpipe.runs.tracking_check import finalize_pipeline_run

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    uri = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(UserError) as err:
        finalize_pipeline_run("run-1", uri, {"state": "FAILED", "error_message": "x", "pipeline_task_name": "t"})
    (problem,) = err.value.problems
    assert problem.rule == "mlflow" and "the MLflow server does not answer" in problem.message and uri in str(problem)
