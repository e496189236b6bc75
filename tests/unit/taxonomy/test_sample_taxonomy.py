"""The checked-in sample taxonomy: valid, every kind, and its document commit reproducible offline."""

from __future__ import annotations

import yaml

from labpipe.taxonomy.sample import prepare_sample_taxonomy, sample_taxonomy_source
from labpipe.taxonomy.validate import validate_taxonomy
from tests.unit.taxonomy.gitscenario import git


def test_sample_taxonomy_is_valid_and_has_every_kind():
    report = validate_taxonomy(sample_taxonomy_source())
    assert report.problems == []
    assert sorted(leaf.kind for leaf in report.leaves) == ["freeform_skill", "grounded_skill", "knowledge"]


def test_prepared_document_repo_has_the_commit_the_leaf_names(tmp_path):
    taxonomy = prepare_sample_taxonomy(tmp_path)
    leaf = yaml.safe_load((taxonomy / "knowledge/community/tool_library/qna.yaml").read_text())
    docs = (taxonomy / leaf["document"]["repo"]).resolve()
    assert git(docs, "rev-parse", "HEAD") == leaf["document"]["commit"], (
        "taxonomy/documents changed: update document.commit (see taxonomy/README.md)"
    )
    assert git(taxonomy, "status", "--porcelain") == "" and not (taxonomy / "documents").exists()
