"""The compiled pipeline's evaluation engine: the evaluation task runs in its own image without GPUs unless
evaluation_engine=vllm, when a task on the GPU evaluation image (vLLM pinned) requests evaluation_gpus GPUs.

KFP 2.17 fixes a task's image when compiling, and an accelerator request is a task field
(`set_accelerator_limit` takes a pipeline parameter, but the image cannot), so the engine is a dsl.If/Else
on the parameter; read from the checked-in YAML, as the cluster gets it."""

from __future__ import annotations

from tests.support.compiled import executors, pipeline_spec


def _branch_of(spec: dict, task: str) -> str:
    """The trigger condition of the DAG that holds `task`."""
    holder = next(n for n, c in spec["components"].items() if task in c.get("dag", {}).get("tasks", {}))
    for comp in spec["components"].values():
        for t in comp.get("dag", {}).get("tasks", {}).values():
            if t["componentRef"]["name"] == holder:
                return t.get("triggerPolicy", {}).get("condition", "")
    raise AssertionError(f"no task runs {holder}")


def test_gpu_evaluation_only_when_the_engine_is_vllm():
    spec = pipeline_spec()
    executors = spec["deploymentSpec"]["executors"]
    cpu, gpu = executors["exec-mt-bench-eval"]["container"], executors["exec-mt-bench-eval-gpu"]["container"]
    assert "/labpipe-evaluation:" in cpu["image"] and "accelerator" not in cpu["resources"]
    assert "/labpipe-evaluation-gpu:" in gpu["image"]
    accelerator = gpu["resources"]["accelerator"]
    assert accelerator["resourceType"] == "nvidia.com/gpu"
    assert accelerator["resourceCount"] == "{{$.inputs.parameters['pipelinechannel--evaluation_gpus']}}"
    assert _branch_of(spec, "mt-bench-eval") == "inputs.parameter_values['pipelinechannel--evaluation_engine'] != 'vllm'"
    assert _branch_of(spec, "mt-bench-eval-gpu").startswith("!(inputs.parameter_values['pipelinechannel--evaluation_engine']")
    # both publish what they approved: the gate follows each
    assert "mt-bench-eval-gpu-Output" in _branch_of(spec, "publish-model-2")
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["evaluation_engine"]["defaultValue"] == "hf"  # the laptop default: in-process
    assert inputs["evaluation_gpus"]["defaultValue"] == 1


def test_gpu_evaluation_lands_on_gpu_nodes():
    executor = executors()["exec-mt-bench-eval-gpu"]
    assert executor["nodeSelector"] and executor["tolerations"]  # the node_selector / tolerations parameters


def test_both_gate_passed_branches_hand_the_published_model_to_serve():
    """`serve` (off by default) reaches the publish task after either evaluation branch (CPU and GPU)."""
    spec = pipeline_spec()
    assert spec["root"]["inputDefinitions"]["parameters"]["serve"]["defaultValue"] == ""
    publishes = [t for c in spec["components"].values() for t in c.get("dag", {}).get("tasks", {}).values()
                 if t["componentRef"]["name"].startswith("comp-publish-model")]  # fmt: skip
    assert len(publishes) == 2
    for task in publishes:
        assert task["inputs"]["parameters"]["serve"]["componentInputParameter"] == "pipelinechannel--serve"
