"""Paths into the real MT-Bench data in ../shared/data (read there, never copied into the repository)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mt_bench_dir(shared_data) -> Path:
    return shared_data / "mt_bench"


@pytest.fixture(scope="session")
def judgments_dir(shared_data) -> Path:
    return shared_data / "mt_bench_judgments"
