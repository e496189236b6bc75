"""Fixtures of the training tests: real taxonomy-derived training sets in the critique stage's format."""

from __future__ import annotations

import pytest

from tests.unit.training.taxonomy_samples import write_sets


@pytest.fixture(scope="session")
def training_sets(shared_data, tmp_path_factory):
    """(knowledge.jsonl, skills.jsonl); the skills set carries 5 knowledge replay rows like the critique output."""
    return write_sets(shared_data, tmp_path_factory.mktemp("training-data"), skills_replay=5)
