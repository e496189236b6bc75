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
