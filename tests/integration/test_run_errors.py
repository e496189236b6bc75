"""`labpipe run` on user mistakes: located problems, exit 1, no traceback; before the DAG or from inside it.

Each test runs the real CLI in a subprocess (stdout not a terminal: the plain stage view) on a copy of
the sample taxonomy made broken in one way.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labpipe.taxonomy.sample import prepare_sample_taxonomy

LABPIPE = str(Path(sys.executable).parent / "labpipe")


def _run(args: list[str], workdir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([LABPIPE, "run", "--workdir", str(workdir), *args], capture_output=True, text=True,
                          env=env, timeout=900)


def test_broken_leaf_fails_before_the_pipeline_starts(tmp_path):
    taxonomy = prepare_sample_taxonomy(tmp_path / "t")
    leaf = taxonomy / "compositional_skills" / "writing" / "freeform" / "haiku" / "qna.yaml"
    leaf.write_text("".join("version: x\n" if line.startswith("version:") else line
                            for line in leaf.read_text().splitlines(keepends=True)))
    proc = _run(["--taxonomy", str(taxonomy), "--base", "empty"], tmp_path / "w")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    problems = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert problems == ["compositional_skills/writing/freeform/haiku/qna.yaml:1:10: error: version [version]: "
                        "unsupported version 'x'; supported: 1, 2, 3 Fix: set 'version: 3'"]
    assert not (tmp_path / "w" / "kfp").exists()  # no pipeline task ran
    assert not (tmp_path / "w" / "models").exists()  # nor was the tiny model built


@pytest.mark.slow
def test_user_error_inside_a_component_is_reported_by_task(tmp_path, shared_data):
    taxonomy = prepare_sample_taxonomy(tmp_path / "t")
    shutil.rmtree(tmp_path / "t" / "sample-documents")  # the knowledge leaf's document repository is gone
    workdir = tmp_path / "w"
    proc = _run(["--taxonomy", str(taxonomy), "--base", "empty", "--param", f"questions={shared_data / 'mt_bench'}"],
                workdir)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output
    stage_lines = [line.split("] ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("[")]
    # Tasks with no upstream (the SFT resources check) may run at any point of the local DAG: this test is
    # about the numbered stages, in their order.
    stage_lines = [line for line in stage_lines if re.match(r"^\S+ \d+ ", line)]
    assert stage_lines[0] == "▶ 0 preflight: started" and stage_lines[1].startswith("✓ 0 preflight: done")
    assert stage_lines[2] == "▶ 1 taxonomy diff: started"
    assert stage_lines[3].startswith("✓ 1 taxonomy diff: done")
    assert stage_lines[4] == "▶ 2 seed extraction: started", stage_lines
    assert stage_lines[5].startswith("✗ 2 seed extraction: FAILED"), stage_lines
    assert any("3 synthetic generation: skipped" in line for line in stage_lines[6:]), stage_lines
    log = workdir / "logs" / "seed-extraction.log"
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert errors[0].startswith("task seed-extraction (2 seed extraction): error: task-failed")
    assert str(log) in errors[0]
    assert errors[1].startswith("knowledge/community/tool_library/qna.yaml:")
    assert "document-repo [document.repo]" in errors[1] and "cannot clone the document repository" in errors[1]
    task_log = log.read_text()
    assert "cannot clone the document repository" in task_log and "Traceback" not in task_log
