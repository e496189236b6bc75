"""Shared fixtures: the tiny model (built once per session) and the real data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Tiny models on 2 cores: one thread per process is faster than torch's default (thread start-up and
# oversubscription dominate such small matrices). Subprocesses (kfp.local tasks, CLI runs) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)


def _shared_data() -> Path:
    env = os.environ.get("LABPIPE_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = _shared_data()
    if not path.exists():
        pytest.fail(f"real test data not found at {path}; set LABPIPE_SHARED_DATA or check out ../shared")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from labpipe.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch, tmp_path):
    # Tests never talk to a tracking server or an S3 endpoint they did not start themselves.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("LABPIPE_CACHE", str(tmp_path / "labpipe-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
