"""The offline default: the tiny random model in-process as teacher and judge, through the CLI.

Its outputs are gibberish but schema-valid (grammar-constrained decoding), so with the smoke
settings (generate --no-gate, critique --profile smoke) both training sets must come out non-empty.
"""

from __future__ import annotations

import json

import pytest

from labpipe.cli import main
from labpipe.critique.stage import KNOWLEDGE_SET, REPORT_JSON, SKILLS_SET
from tests.unit.critique.fixtures import SEEDS

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_tiny_model_in_process_generates_and_critiques_non_empty_sets(tiny_model, tmp_path):
    lines = SEEDS.read_text().splitlines()
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        "\n".join(line for line in lines if '"freeform_skill"' in line or '"knowledge"' in line) + "\n"
    )
    gen, crit = tmp_path / "gen", tmp_path / "crit"
    assert (
        main(
            [
                "generate",
                "--seeds",
                str(seeds),
                "--out",
                str(gen),
                "--teacher",
                str(tiny_model),
                "--fan-out-scale",
                "0.2",
                "--no-gate",
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "critique",
                "--in",
                str(gen),
                "--out",
                str(crit),
                "--judge",
                str(tiny_model),
                "--profile",
                "smoke",
            ]
        )
        == 0
    )
    for name in (KNOWLEDGE_SET, SKILLS_SET):
        rows = [json.loads(line) for line in (crit / name).read_text().splitlines()]
        assert rows and all(r["messages"][0]["content"] and r["messages"][1]["content"] for r in rows)
    report = json.loads((crit / REPORT_JSON).read_text())
    assert report["totals"]["judge_requests_sent"] > 0 and report["totals"]["kept"] > 0
