"""The run configuration (labpipe.runconfig) is the pipelines' parameters: names, types, defaults and
descriptions of the compiled lab pipeline (and the review pipeline) come from it and nowhere else."""

from __future__ import annotations

import inspect

import pytest
import yaml

from labpipe.paths import pipelines_dir
from labpipe.runconfig import ReviewConfig, RunConfig, parameters

KFP_TYPES = {
    str: "STRING",
    int: "NUMBER_INTEGER",
    float: "NUMBER_DOUBLE",
    bool: "BOOLEAN",
    dict: "STRUCT",
    list: "LIST",
}
COMPILE_TIME = {"training_image"}  # defaults pinned when compiling (images.lock.json), "" in the dataclass


def _compiled_inputs() -> dict:
    spec = next(yaml.safe_load_all((pipelines_dir() / "lab_pipeline.yaml").read_text()))
    return spec["root"]["inputDefinitions"]["parameters"]


def test_the_compiled_pipeline_inputs_are_the_run_configuration():
    compiled = _compiled_inputs()
    declared = {p.name: p for p in parameters(RunConfig)}
    assert set(compiled) == set(declared)
    for name, p in declared.items():
        found = compiled[name]
        assert found["parameterType"] == KFP_TYPES[p.type], name
        assert found.get("description", "") == p.description and p.description, name
        if p.required:
            assert not found.get("isOptional"), name
        elif name not in COMPILE_TIME:
            assert found["defaultValue"] == p.default, name


@pytest.mark.parametrize(
    "cls, module, attr",
    [(RunConfig, "lab_pipeline", "lab_pipeline"), (ReviewConfig, "review_pipeline", "review_pipeline")],
)
def test_the_pipeline_signatures_are_generated_from_the_dataclasses(cls, module, attr):
    import importlib

    pipeline = getattr(importlib.import_module(f"labpipe.pipelines.{module}"), attr)
    sig = inspect.signature(pipeline.pipeline_func)
    declared = parameters(cls)
    assert list(sig.parameters) == [p.name for p in declared]
    for p in declared:
        assert sig.parameters[p.name].annotation is p.type
        if p.name not in COMPILE_TIME:
            assert sig.parameters[p.name].default == p.default


def test_the_param_parser_uses_the_run_configuration_types():
    from labpipe.commands.params import declared_parameters

    declared = declared_parameters()
    assert {k: t for k, (t, _) in declared.items()} == {p.name: p.type for p in parameters(RunConfig)}


def test_every_parameter_is_described_and_typed():
    for cls in (RunConfig, ReviewConfig):
        for p in parameters(cls):
            assert p.description.strip(), p.name
            assert p.type in KFP_TYPES, p.name


def test_resource_classes():
    cfg = RunConfig(taxonomy="t", base_model="m")
    assert cfg.resources("training") == ("8", "16", "64Gi", "128Gi")
    assert cfg.resources("light") == ("500m", "2", "1Gi", "4Gi")


def test_a_client_option_reaches_both_endpoint_stages():
    """schema_retries: one RunConfig field (the parameter table), one ClientOptions field, wired to the
    generation and critique tasks (the example of adding a client option in CONTRIBUTING.md)."""
    from labpipe.llm.options import ClientOptions, model_spec
    from tests.support.compiled import pipeline_spec

    spec = pipeline_spec()
    assert spec["root"]["inputDefinitions"]["parameters"]["schema_retries"]["defaultValue"] == 2
    tasks = {name: task for comp in [spec["root"], *spec["components"].values()]
             for name, task in comp.get("dag", {}).get("tasks", {}).items()}  # fmt: skip
    for name in ("synthetic-generation", "critique-filter"):
        source = tasks[name]["inputs"]["parameters"]["schema_retries"]["componentInputParameter"]
        assert source in ("schema_retries", "pipelinechannel--schema_retries"), name
    assert model_spec(ClientOptions(endpoint="http://t/v1", model="m", schema_retries=5)).schema_retries == 5
