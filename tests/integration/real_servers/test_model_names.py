"""Model names are checked where they are used, against real servers.

- llama.cpp's server answers whatever model name a request carries: the name is checked against its
  GET /v1/models list (ids and aliases) when a stage starts, and a run without a name records the listed one.
- `transformers serve` lists no model (its GET /v1/models answers 500 without a hub cache, or 200 with an
  empty list): a one-token chat completion decides, so preflight passes wherever the stages work, and a
  wrong name is a problem with the server's own words (the path it is pinned to), never "a bug".
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from labpipe import preflight
from labpipe.generation.stage import GENERATED, MANIFEST
from tests.unit.critique.fixtures import SEEDS

pytestmark = pytest.mark.integration


def _generate(server, out, *model: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "labpipe.cli", "generate", "--seeds", str(SEEDS), "--out", str(out)]
    cmd += ["--teacher", server.base_url, *model, "--fan-out-scale", "0.05", "--no-gate", "--quiet"]
    cmd += ["--concurrency", "2", "--max-failed-share", "1"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=400)


def test_an_unknown_model_name_fails_generate_at_once_against_llamacpp(llamacpp, tmp_path):
    done = _generate(llamacpp, tmp_path / "nope", "--teacher-model", "nope-model")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "does not serve model 'nope-model' (it lists: tiny)" in done.stderr
    assert not (tmp_path / "nope" / GENERATED).exists() and not (tmp_path / "nope" / MANIFEST).exists()

    named_by_server = _generate(llamacpp, tmp_path / "listed")  # no name: the one it lists, recorded
    assert named_by_server.returncode == 0, named_by_server.stderr
    manifest = json.loads((tmp_path / "listed" / MANIFEST).read_text())
    assert manifest["teacher"]["model"] == "tiny"


def test_preflight_passes_with_transformers_serve_and_names_a_wrong_model(transformers_serve, tiny_model):
    report = preflight.Report()
    preflight.check_endpoint("teacher", {"teacher": transformers_serve.base_url, "teacher_model": str(tiny_model)},
                             report, 60)  # fmt: skip
    assert not report.problems, report.problems
    assert report.passed == [f"teacher: {transformers_serve.base_url} serves {tiny_model}"]

    report = preflight.Report()
    preflight.check_endpoint(
        "judge", {"judge": transformers_serve.base_url, "judge_model": "tiny"}, report, 60
    )
    (problem,) = report.problems
    assert problem.field == "judge_model" and "tiny" in problem.message and "pinned to" in problem.message
    assert "bug" not in str(problem)
