"""`labpipe runs`: recent pipeline runs from a real `mlflow server`, and from the KFP API (the recording
fake in tests/support/fake_kfp.py, through the real kfp.Client) filled in from MLflow."""

from __future__ import annotations

import json
import uuid

import pytest

from labpipe.cli import main
from labpipe.runs import lineage, tracking
from tests.support.fake_kfp import FakeKFPServer

COMMIT = "abcdef0123456789abcdef0123456789abcdef01"


def _record_run(uri: str, pid: str, *, publish: bool, fail_in: str = "") -> None:
    lineage.record("taxonomy_diff", {"leaves": 3, "taxonomy_commit": COMMIT}, pipeline_run_id=pid, tracking_uri=uri)
    lineage.record("synthetic_generation", {"requests_sent": 12, "requests_cached": 30}, pipeline_run_id=pid,
                   tracking_uri=uri)
    if fail_in:
        with pytest.raises(RuntimeError), tracking.stage_run(fail_in, pipeline_run_id=pid, tracking_uri=uri):
            raise RuntimeError("judge down")
        tracking.close_pipeline_run(uri, pid, state="FAILED")
        return
    lineage.record("mt_bench_eval", {"publish": publish, "reasons": ["x"]}, pipeline_run_id=pid, tracking_uri=uri)
    if publish:
        lineage.record("publish_model", {"version": "4", "registered_model": "m"}, pipeline_run_id=pid,
                       tracking_uri=uri)
    tracking.close_pipeline_run(uri, pid, state="SUCCEEDED")


@pytest.fixture(scope="module")
def three_runs(mlflow_server_url):
    ids = {kind: f"kfp-{kind}-{uuid.uuid4().hex[:6]}" for kind in ("published", "rejected", "failed")}
    _record_run(mlflow_server_url, ids["published"], publish=True)
    _record_run(mlflow_server_url, ids["rejected"], publish=False)
    _record_run(mlflow_server_url, ids["failed"], publish=False, fail_in="critique_filter")
    return ids


def test_runs_from_mlflow(three_runs, mlflow_server_url, capsys):
    assert main(["runs", "--tracking-uri", mlflow_server_url, "--limit", "3", "--json"]) == 0
    rows = {r["pipeline_run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(three_runs.values())  # the newest three
    published, rejected, failed = (rows[three_runs[k]] for k in ("published", "rejected", "failed"))
    assert published["status"] == "FINISHED" and published["gate"] == "publish"
    assert published["published_version"] == "4"
    assert published["taxonomy_commit"] == COMMIT[:12] and published["leaves_changed"] == "3"
    assert published["requests_sent"] == "12" and published["requests_reused"] == "30"
    assert rejected["gate"] == "rejected" and rejected["published_version"] == ""
    assert failed["status"] == "FAILED (critique_filter)" and failed["gate"] == ""

    assert main(["runs", "--tracking-uri", mlflow_server_url, "--limit", "3"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["run", "name", "status", "started", "commit", "leaves", "sent", "reused", "gate",
                                "version"]
    assert table[1].startswith(three_runs["failed"])  # newest first
    assert len(table) == 4


def test_runs_from_the_pipeline_server_with_mlflow_details(three_runs, mlflow_server_url, monkeypatch, capsys):
    with FakeKFPServer(token="t0ken") as kfp:
        monkeypatch.setenv("KFP_TOKEN", "t0ken")
        kfp.runs = [
            {"run_id": three_runs["published"], "display_name": "weekly-2026-11-29", "state": "SUCCEEDED",
             "created_at": "2026-11-29T03:00:00Z"},
            {"run_id": "not-in-mlflow", "display_name": "weekly-2026-11-22", "state": "FAILED",
             "created_at": "2026-11-22T03:00:00Z"},
        ]
        assert main(["runs", "--host", kfp.url, "--tracking-uri", mlflow_server_url, "--limit", "5", "--json"]) == 0
        [(path, query)] = [(p, q) for p, q in kfp.queries if p == "/apis/v2beta1/runs"]
        assert query["page_size"] == "5" and query["sort_by"] == "created_at desc"
    rows = json.loads(capsys.readouterr().out)
    assert [r["pipeline_run_id"] for r in rows] == [three_runs["published"], "not-in-mlflow"]
    assert rows[0]["status"] == "SUCCEEDED" and rows[0]["name"] == "weekly-2026-11-29"
    assert rows[0]["started"] == "2026-11-29 03:00"
    assert rows[0]["published_version"] == "4" and rows[0]["requests_reused"] == "30"
    assert rows[1]["status"] == "FAILED" and rows[1]["taxonomy_commit"] == ""  # the server knows; MLflow does not


def test_runs_needs_a_source(capsys):
    assert main(["runs"]) == 1
    assert "--host" in capsys.readouterr().err


def test_the_chain_of_a_failed_run_says_where_it_stopped(three_runs, mlflow_server_url):
    info = lineage.describe_any(mlflow_server_url, three_runs["failed"])
    assert info.status == "FAILED"
    steps = {s["step"]: s for s in lineage.chain(info)}
    assert steps["taxonomy"]["recorded"] and steps["generated"]["recorded"]
    assert steps["kept"] == {"step": "kept", "recorded": False, "text": "not reached: critique_filter failed",
                             "data": {}}
    assert steps["registered"]["text"] == "not reached: critique_filter failed"


def test_runs_of_one_kfp_experiment(monkeypatch, capsys):
    with FakeKFPServer(token="t0ken") as kfp:
        monkeypatch.setenv("KFP_TOKEN", "t0ken")
        kfp.experiments["exp-9"] = {"experiment_id": "exp-9", "display_name": "weekly"}
        kfp.runs = [{"run_id": "r-1", "display_name": "weekly-1", "state": "RUNNING",
                     "created_at": "2026-12-01T03:00:00Z"}]
        assert main(["runs", "--host", kfp.url, "--experiment", "weekly"]) == 0
        [(_, query)] = [(p, q) for p, q in kfp.queries if p == "/apis/v2beta1/runs"]
    assert query["experiment_id"] == "exp-9"
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:4] == ["r-1", "weekly-1", "RUNNING", "2026-12-01"]  # no MLflow: the rest is "-"
