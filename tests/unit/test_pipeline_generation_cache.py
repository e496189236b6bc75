"""The compiled pipeline passes its `generation_cache` parameter to generation and critique."""

from __future__ import annotations

from tests.support.compiled import pipeline_spec


def test_generation_cache_is_a_pipeline_parameter_wired_to_both_paid_stages():
    spec = pipeline_spec()
    param = spec["root"]["inputDefinitions"]["parameters"]["generation_cache"]
    assert param["defaultValue"] == "" and param["parameterType"] == "STRING"
    tasks = {name: task for comp in [spec["root"], *spec["components"].values()]
             for name, task in comp.get("dag", {}).get("tasks", {}).items()}  # generation sits inside ParallelFor
    for task in ("synthetic-generation", "critique-filter"):
        given = tasks[task]["inputs"]["parameters"]["generation_cache"]
        assert given["componentInputParameter"] in ("generation_cache", "pipelinechannel--generation_cache"), task
