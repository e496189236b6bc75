"""Preflight is composed from the stages: the run configuration becomes each stage's typed config, each
stage's checks module says that config's problems, and every problem names the pipeline parameter."""

from __future__ import annotations

import dataclasses

from labpipe.preflight import check, stage_configs, stage_problems
from labpipe.runconfig import RunConfig


def _run(**changes) -> RunConfig:
    return dataclasses.replace(RunConfig(taxonomy="t", base_model="m"), **changes)


def test_the_weekly_defaults_have_no_problems():
    configs, problems = stage_configs(_run())
    assert problems == [] and stage_problems(configs) == []
    assert configs.training.preset == "lab" and configs.critique.profile == "lab"
    assert configs.evaluation.tolerance == 0.0 and configs.seeds.chunk_tokens == 1000


def test_each_stage_problem_names_the_pipeline_parameter():
    configs, _ = stage_configs(
        _run(
            training_preset="huge",
            critique_profile="nope",
            gate_tolerance=99.0,
            evaluation_engine="tgi",
            generation_shards=0,
            training_deadline_minutes=-1,
        )
    )
    fields = {p.field for p in stage_problems(configs)}
    assert fields == {
        "training_preset",
        "critique_profile",
        "gate_tolerance",
        "evaluation_engine",
        "generation_shards",
        "training_deadline_minutes",
    }


def test_a_setting_two_stages_share_is_said_once():
    report = check({"max_failed_share": 2.0}, network=False)
    assert [p.field for p in report.problems] == ["max_failed_share"]


def test_placement_parses_from_json_text_and_objects():
    for selector, tolerations in (
        ('{"a": "b"}', '[{"key": "k", "operator": "Exists"}]'),
        ({"a": "b"}, [{"key": "k", "operator": "Exists"}]),
    ):
        configs, problems = stage_configs(_run(node_selector=selector, tolerations=tolerations))
        assert problems == [] and configs.training.node_selector == {"a": "b"}
        assert configs.training.tolerations == [{"key": "k", "operator": "Exists"}]
