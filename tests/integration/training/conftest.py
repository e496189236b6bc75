"""Fixtures of the training integration tests: real sets from the taxonomy, and one phased run shared by the
module (knowledge then skills on the tiny model, smoke preset, logged to a real MLflow SQLite store)."""

from __future__ import annotations

import pytest

from tests.unit.training.taxonomy_samples import write_sets


@pytest.fixture(scope="session")
def training_sets(shared_data, tmp_path_factory):
    return write_sets(shared_data, tmp_path_factory.mktemp("training-data"), skills_replay=5)


@pytest.fixture(scope="session")
def phased_run(tiny_model, training_sets, tmp_path_factory):
    """Knowledge SFT from the tiny model, then skill SFT from its result; returns paths and both summaries."""
    from labpipe.training.config import TrainingConfig
    from labpipe.training.stage import run_training

    root = tmp_path_factory.mktemp("phased")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    knowledge, skills = training_sets
    k_out, s_out = root / "knowledge", root / "skills"
    k_summary = run_training(
        TrainingConfig(
            phase="knowledge",
            base_model=str(tiny_model),
            data=str(knowledge),
            out=str(k_out),
            run_id="phased-test",
            tracking_uri=tracking_uri,
        )
    )
    s_summary = run_training(
        TrainingConfig(
            phase="skills",
            base_model=str(k_out / "model"),
            data=str(skills),
            out=str(s_out),
            run_id="phased-test",
            tracking_uri=tracking_uri,
        )
    )
    return {
        "base": tiny_model,
        "knowledge": k_out,
        "skills": s_out,
        "tracking_uri": tracking_uri,
        "summaries": {"knowledge": k_summary, "skills": s_summary},
    }
