"""Gate and publish against a real `mlflow server` (SQLite store, artifacts proxied to a moto S3 endpoint)."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from labpipe.errors import UserError
from labpipe.evaluation.gate import GateConfig, run_gate
from labpipe.registry.publish import publish_model


def metrics_file(path, candidate: float, base: float):
    scores = {
        "candidate": {"overall": candidate, "turn1": candidate, "turn2": candidate},
        "base": {"overall": base},
    }
    path.write_text(
        json.dumps(
            {
                "invalid": False,
                "candidate": "candidate",
                "base": "base",
                "judge": "gpt-4",
                "questions_sha256": "abc",
                "scores": scores,
            }
        )
    )
    return str(path)


def test_gate_publish_then_gate_against_production(mlflow_server_url, tiny_model, tmp_path, monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    name = "labpipe-gate-test"
    first = run_gate(
        GateConfig(
            metrics=metrics_file(tmp_path / "m1.json", 6.0, 5.0),
            out=str(tmp_path / "d1.json"),
            production_model_name=name,
            run_id="gate-1",
            tracking_uri=mlflow_server_url,
        )
    )
    assert first["publish"] and first["production"] is None
    assert any(f"no model registered as {name}@production" in r for r in first["reasons"])
    assert json.loads((tmp_path / "d1.json").read_text()) == first

    version = publish_model(
        str(tiny_model), str(tmp_path / "d1.json"), name, run_id="gate-1", tracking_uri=mlflow_server_url
    )
    client = MlflowClient(tracking_uri=mlflow_server_url)
    prod = client.get_model_version_by_alias(name, "production")
    assert prod.version == version == "1" and prod.tags["mt_bench.overall"] == "6.0"
    assert prod.source.startswith("runs:/") and "config.json" in {
        f.path.rsplit("/", 1)[-1] for f in client.list_artifacts(prod.run_id, "model")
    }

    # The next candidate beats the base but not production: the gate says no, and says why.
    second = run_gate(
        GateConfig(
            metrics=metrics_file(tmp_path / "m2.json", 5.5, 5.0),
            out=str(tmp_path / "d2.json"),
            production_model_name=name,
            tolerance=0.2,
            tracking_uri=mlflow_server_url,
        )
    )
    assert not second["publish"] and second["production"] == 6.0
    assert "candidate 5.500 is below production 6.000 (tolerance 0.2)" in second["reasons"]
    with pytest.raises(UserError, match="decided not to publish"):
        publish_model(str(tiny_model), str(tmp_path / "d2.json"), name, tracking_uri=mlflow_server_url)
    assert client.get_model_version_by_alias(name, "production").version == "1"
