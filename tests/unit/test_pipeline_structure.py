"""The compiled pipelines keep their structure: tasks, components, inputs and where each comes from, defaults,
retry and caching policy, Kubernetes platform config and dependencies, compared with a normalized snapshot
(tests/unit/snapshots/*.json, taken from the compiled pipelines; see tests/unit/pipeline_structure.py).

A deliberate change to the pipeline updates the snapshot in the same commit, so the diff shows it:
`LABPIPE_UPDATE_SNAPSHOTS=1 pytest tests/unit/test_pipeline_structure.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from tests.unit.pipeline_structure import structure

SNAPSHOTS = Path(__file__).parent / "snapshots"


def _lab(tmp_path: Path) -> list[dict]:
    from labpipe.pipelines.runner import compile_pipeline

    out = compile_pipeline(tmp_path / "lab.yaml", images_out=tmp_path / "images")
    return list(yaml.safe_load_all(out.read_text()))


def _review(tmp_path: Path) -> list[dict]:
    from labpipe.pipelines.review_pipeline import compile_review_pipeline

    out = compile_review_pipeline(str(tmp_path / "review.yaml"))
    return list(yaml.safe_load_all(Path(out).read_text()))


@pytest.mark.parametrize("name, compiled", [("lab_pipeline", _lab), ("review_pipeline", _review)])
def test_compiled_structure_is_unchanged(tmp_path, name, compiled):
    found = structure(compiled(tmp_path))
    path = SNAPSHOTS / f"{name}.json"
    if os.environ.get("LABPIPE_UPDATE_SNAPSHOTS"):
        path.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    expected = json.loads(path.read_text())
    assert found["inputs"] == expected["inputs"], "the pipeline's parameters changed"
    assert sorted(found["tasks"]) == sorted(expected["tasks"]), "the set of tasks changed"
    for task, shape in expected["tasks"].items():
        assert found["tasks"][task] == shape, f"task {task} changed"
    assert found == expected


def test_the_checked_in_yaml_has_the_snapshot_structure():
    from labpipe.paths import pipelines_dir

    docs = list(yaml.safe_load_all((pipelines_dir() / "lab_pipeline.yaml").read_text()))
    assert structure(docs) == json.loads((SNAPSHOTS / "lab_pipeline.json").read_text())
