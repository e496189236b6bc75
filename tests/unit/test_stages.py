"""The one table of stages (labpipe.runs.stages): every stage run the library opens and every component that
runs a lineage stage is in it, old spellings map to one name, and the order is the pipeline's."""

from __future__ import annotations

import re
from pathlib import Path

from labpipe.runs import stages

SRC = Path(__file__).resolve().parents[2] / "src" / "labpipe"
COMPONENTS = Path(__file__).resolve().parents[2] / "components"


def test_every_stage_run_the_library_opens_is_in_the_table():
    opened = set()
    for path in SRC.rglob("*.py"):
        if "components" in path.parts or "pipelines" in path.parts:
            continue
        opened |= set(re.findall(r'maybe_stage_run\(\s*"([a-z_]+)"', path.read_text()))
    assert opened and all(stages.stage(name) is not None for name in opened), opened


def test_old_spellings_map_to_one_name():
    assert stages.canonical("skills_sft") == stages.canonical("skill-sft") == "skill_sft"
    assert stages.canonical("knowledge-sft") == "knowledge_sft"
    assert stages.canonical("taxonomy_diff") == "taxonomy_diff"
    assert stages.title("skills_sft") == "skill SFT" and stages.title("something_else") == "something else"


def test_order_is_the_pipelines_then_any_other_by_name():
    names = ["publish_model", "zeta", "skill_sft", "taxonomy_diff", "alpha", "knowledge_sft"]
    assert sorted(names, key=stages.order) == [
        "taxonomy_diff",
        "knowledge_sft",
        "skill_sft",
        "publish_model",
        "alpha",
        "zeta",
    ]


def test_each_component_with_a_figure_is_a_component_folder():
    folders = {p.name.replace("_", "-") for p in COMPONENTS.iterdir() if (p / "component.py").is_file()}
    named = {c for s in stages.STAGES + stages.OTHER_STAGES for c in s.components}
    assert named - {"mt-bench-eval-gpu"} <= folders, named - folders  # the GPU variant shares mt_bench_eval/


def test_key_figure_of_a_known_and_an_unknown_component():
    meta = {"diff": {"leaves": 3, "leaves_added": 2, "leaves_modified": 1}}
    assert stages.key_figure("taxonomy-diff", meta) == "3 changed leaves (2 added, 1 modified, 0 deleted)"
    assert stages.key_figure("taxonomy-diff", {"diff": {}}) == ""  # what the figure needs is missing
    assert stages.key_figure("something", {"x": {"n": 2}}) == "n=2"
