"""Preflight of `serve` (the InferenceService the published model is handed to): off by default; a name that
KServe cannot use (not a DNS-1035 label: it becomes part of the predictor's host names) fails before training."""

from __future__ import annotations

from labpipe.preflight import check


def test_serve_is_off_by_default_and_a_dns_label_passes():
    assert not [p for p in check({}, network=False).problems if p.field == "serve"]
    assert not [p for p in check({"serve": "granite-lab"}, network=False).problems if p.field == "serve"]


def test_an_invalid_inference_service_name_is_a_located_problem():
    for name in ("Granite_Lab", "7b-model", "granite-", "x" * 64):
        [problem] = [p for p in check({"serve": name}, network=False).problems if p.field == "serve"]
        assert "not a valid InferenceService name" in str(problem) and "serve=granite-lab" in str(problem)
