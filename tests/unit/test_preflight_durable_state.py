"""Preflight in a pod: a generation cache that lives inside the pod is a warning (the run works, but a retried
or later run pays for every teacher request again); outside a pod, or with s3:// / off, nothing is said."""

from __future__ import annotations

from labpipe.preflight import check


def test_a_pod_local_generation_cache_is_a_warning_not_an_error(monkeypatch):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    report = check({"generation_cache": ""}, network=False)
    assert not report.problems
    [warning] = report.warnings
    assert warning.severity == "warning" and warning.field == "generation_cache"
    assert "generation_cache=s3://" in str(warning) and "resends every teacher" in str(warning)
    assert "- warning: parameter generation_cache" in report.to_markdown()


def test_no_warning_for_s3_off_or_outside_a_pod(monkeypatch):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    for location in ("s3://bucket/cache", "off"):
        assert not check({"generation_cache": location}, network=False).warnings
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert not check({"generation_cache": ""}, network=False).warnings  # a laptop: local is the right default


def test_a_pod_local_checkpoint_root_is_a_warning_unless_a_workspace_holds_it(monkeypatch):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    report = check({"checkpoint_root": "", "training_backend": "pod", "training_nodes": 1}, network=False)
    assert not report.problems
    [warning] = report.warnings
    assert warning.field == "checkpoint_root" and "starts training over" in str(warning)
    assert "checkpoint_root=s3://" in warning.fix and "LABPIPE_WORKSPACE_SIZE" in warning.fix
    assert not check({"checkpoint_root": "", "workspace": True}, network=False).warnings
    assert not check({"checkpoint_root": "s3://b/ckpt"}, network=False).warnings
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert not check({"checkpoint_root": ""}, network=False).warnings  # a laptop: a rerun resumes locally


def test_a_trainjob_without_s3_checkpoints_fails_preflight_with_the_sft_tasks_own_rule():
    for params in ({"training_backend": "trainjob"}, {"training_backend": "pod", "training_nodes": 2},
                   {"training_backend": "pytorchjob", "checkpoint_root": "/tmp/ckpt"}):
        report = check({"checkpoint_root": "", **params}, network=False)
        [problem] = report.problems
        assert problem.field == "checkpoint_root" and problem.rule == "s3-required"
        assert problem.where == "parameter checkpoint_root" and "checkpoint_root=s3://" in problem.fix
    assert not check({"training_backend": "trainjob", "training_nodes": 2, "checkpoint_root": "s3://b/c"},
                     network=False).problems
    [unknown] = check({"training_backend": "slurm"}, network=False).problems
    assert unknown.field == "training_backend" and "trainjob" in unknown.fix
    [gpus] = check({"training_backend": "pod", "gpus": -1}, network=False).problems  # said once, not twice
    assert gpus.field == "gpus"
