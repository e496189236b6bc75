"""The checked-in pipelines/lab_pipeline.yaml is what `labpipe compile` produces (drift test), the
compile is reproducible, and the compiled pipeline has the shape the README promises."""

from __future__ import annotations

import json

import yaml
from labpipe.pipelines.runner import compile_pipeline

from tests.support.compiled import compiled_text, executors, pipeline_spec

# knowledge and skill SFT are two tasks of the one `sft` component
STAGES = ["taxonomy-diff", "seed-extraction", "synthetic-generation", "critique-filter",
          "sft", "mt-bench-eval", "publish-model"]


def test_checked_in_yaml_is_fresh(tmp_path):
    first = compile_pipeline(tmp_path / "a.yaml").read_text()
    second = compile_pipeline(tmp_path / "b.yaml").read_text()
    assert first == second, "compilation is not reproducible"
    shipped = compiled_text()
    assert shipped == first, "pipelines/lab_pipeline.yaml is stale: run `labpipe compile` and commit it"


def test_compiled_pipeline_shape():
    spec = pipeline_spec()
    components = spec["components"]
    for stage in STAGES:
        assert f"comp-{stage}" in components, stage
    executors = spec["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values()}
    assert all(i.startswith("quay.io/labpipe/labpipe-") for i in images), images
    # the publish step sits under the gate's dsl.If (inside the "something to train" branch)
    tasks = {name: task for c in [spec["root"], *components.values()] for name, task in
             c.get("dag", {}).get("tasks", {}).items()}
    assert {"sft", "sft-2"} <= set(tasks)
    assert tasks["sft-2"]["inputs"]["artifacts"]["base"]["taskOutputArtifact"]["producerTask"] == "sft"
    gate = next(t for t in tasks.values() if "mt-bench-eval" in t.get("triggerPolicy", {}).get("condition", ""))
    assert "condition" in gate["triggerPolicy"]


def test_no_secret_values_in_compiled_yaml():
    text = compiled_text()
    platform = [d for d in yaml.safe_load_all(text) if d and "platforms" in d]
    assert platform, "kfp-kubernetes settings (secrets, GPUs) missing from the compiled YAML"
    # secrets are referenced by name (a pipeline parameter) and key, never by value
    assert "TEACHER_API_KEY" in text and "secretNameParameter" in text
    for forbidden in ("sk-", "api_key: \"", "Bearer "):
        assert forbidden not in text


def test_generation_fans_out_without_secret_name_parameters_in_the_loop():
    """kubeflow/pipelines#13078: inside ParallelFor the secret names are literals, not pipeline parameters."""
    docs = list(yaml.safe_load_all(compiled_text()))
    spec, platform = docs[0], next(d for d in docs if d and "platforms" in d)
    dags = [spec["root"]["dag"], *(c["dag"] for c in spec["components"].values() if "dag" in c)]
    loop = next(t for dag in dags for t in dag["tasks"].values() if "parameterIterator" in t)
    assert loop["parameterIterator"]["items"]["inputParameter"]
    assert loop["iteratorPolicy"]["parallelismLimit"] >= 1
    [dag] = [d for d in dags if "critique-filter" in d["tasks"]]
    critique = dag["tasks"]["critique-filter"]
    assert critique["inputs"]["artifacts"]["generated"]["taskOutputArtifact"]["producerTask"] in dag["tasks"]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    gen = executors["exec-synthetic-generation"]["secretAsEnv"]
    assert gen and all("componentInputParameter" not in s["secretNameParameter"] for s in gen)
    assert {s["secretNameParameter"]["runtimeValue"]["constant"] for s in gen} == {"labpipe-teacher", "labpipe-s3",
                                                                                 "labpipe-mlflow"}


def test_each_secret_means_one_thing_for_every_task():
    """One meaning per secret (issue 18): the teacher's and the data connection's secrets are the same fixed names
    on every task that mounts them, inside the generation loop and out; no parameter can make them differ."""
    spec = pipeline_spec()
    assert not {"teacher_secret", "s3_secret"} & set(spec["root"]["inputDefinitions"]["parameters"])
    names: dict[str, set] = {"TEACHER_ENDPOINT": set(), "AWS_ACCESS_KEY_ID": set()}
    for executor in executors().values():
        for secret in executor.get("secretAsEnv", []):
            for key in secret["keyToEnv"]:
                if key["envVar"] in names:
                    names[key["envVar"]].add(json.dumps(secret["secretNameParameter"], sort_keys=True))
    assert names["TEACHER_ENDPOINT"] == {json.dumps({"runtimeValue": {"constant": "labpipe-teacher"}})}
    assert names["AWS_ACCESS_KEY_ID"] == {json.dumps({"runtimeValue": {"constant": "labpipe-s3"}})}
