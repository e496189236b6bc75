"""Issue 20, items 4 and 7: `labpipe run` finds the user's mistakes up front, in seconds, with the right fix; a
failed preflight task is the user's problems it lists, never "looks like a bug"; the pipeline's own default
`base=production` works on a local taxonomy; `preflight --offline` reports missing required parameters.

Real: the sample taxonomy (a git work tree), a closed 127.0.0.1 port as an unreachable teacher, a real SQLite
MLflow store, the real CLI in a subprocess where a pipeline task runs (kfp.local).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from labpipe.cli import main
from labpipe.commands.pipeline import validate_taxonomy_first
from labpipe.commands.runcheck import check_before_run
from labpipe.errors import UserError
from labpipe.taxonomy.sample import prepare_sample_taxonomy

LABPIPE = str(Path(sys.executable).parent / "labpipe")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_upfront_problem_at_once_named_by_its_flag(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    with pytest.raises(UserError) as err:
        check_before_run(
            {
                "taxonomy": str(tmp_path / "taxonmy"),
                "base_model": str(tmp_path / "granite"),
                "teacher": url,
                "max_questions": 500,
            },
            tiny_base_model=False,
        )
    lines = str(err.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "parameter max_questions",
        f"--taxonomy {tmp_path}/taxonmy",
        "--base-model",
        "--teacher",
    ], lines
    assert "check the path" in lines[1] and "git URL" not in lines[1]  # a typo is not a reason for a URL
    assert f"{url} does not answer (cannot connect" in lines[3]


def test_base_production_on_a_local_taxonomy_diffs_against_the_registry(tmp_path, monkeypatch):
    """The pipeline's default base: no model registered yet means every leaf (as the diff task does), not
    "the base ref 'production' does not exist"."""
    taxonomy = prepare_sample_taxonomy(tmp_path / "taxonomy")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    validate_taxonomy_first({"taxonomy": str(taxonomy), "base": "production"})


def test_preflight_offline_reports_missing_required_parameters(capsys):
    assert main(["preflight", "--offline"]) == 1
    err = capsys.readouterr().err
    assert "parameter taxonomy: error: preflight [taxonomy]: is required Fix: pass --param taxonomy=" in err
    assert "parameter base_model: error: preflight [base_model]: is required" in err


def test_preflight_fix_names_the_parameter_not_a_flag_that_does_not_exist(tmp_path, capsys):
    rc = main(
        [
            "preflight",
            "--param",
            "taxonomy=x",
            "--param",
            "base_model=y",
            "--param",
            f"questions={tmp_path / 'nope'}",
            "--offline",
        ]
    )
    assert rc == 0  # offline: the data is a network-side check
    from labpipe.preflight import Report, check_mt_bench

    report = Report()
    check_mt_bench({"questions": str(tmp_path / "nope")}, report)
    assert report.problems and all(
        "--param questions=" in p.fix and "--questions" not in p.fix for p in report.problems
    )


@pytest.mark.slow
def test_a_failed_preflight_task_is_the_users_problems_not_a_bug(tmp_path, shared_data):
    """A ref that is not in the taxonomy passes the up-front checks (they leave refs to the task) and stops the
    pipeline's preflight task: its problems are repeated, one line each."""
    taxonomy = prepare_sample_taxonomy(tmp_path / "t")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["LABPIPE_MT_BENCH_DATA"] = str(shared_data / "mt_bench")
    proc = subprocess.run(
        [
            LABPIPE,
            "run",
            "--plain",
            "--workdir",
            str(tmp_path / "w"),
            "--taxonomy",
            str(taxonomy),
            "--base",
            "empty",
            "--param",
            "taxonomy_ref=no-such-branch",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "✗ 0 preflight: FAILED" in proc.stdout and "1 problem(s)" in proc.stdout
    assert "looks like a bug" not in proc.stderr and "Traceback" not in proc.stdout + proc.stderr
    assert "stopped on 1 problem(s) in the input" in proc.stderr
    assert (
        "parameter taxonomy_ref: error: preflight [taxonomy_ref]: 'no-such-branch' is not a branch"
        in proc.stderr
    )
