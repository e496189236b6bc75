"""The compiled pipeline's cluster policy, read from the checked-in IR YAML: preflight first, an explicit
caching decision on every task (nothing that reads external state or has side effects is cached),
retries with backoff on the long or endpoint-bound stages, CPU/memory requests and limits from pipeline
parameters on every task, the weekly defaults, and the early-exit branch."""

from __future__ import annotations

import yaml
from labpipe.pipelines import lab_pipeline

from tests.support.compiled import compiled_docs

# compiled task name -> the policy's name for it (knowledge and skill SFT are two tasks of `sft`)
# (the GPU evaluation branch, evaluation_engine=vllm, repeats the gate: publish-model-2, run-report-3/-4)
LOGICAL = {"sft": "knowledge-sft", "sft-2": "skill-sft", "run-report-2": "run-report", "run-report-3": "run-report",
           "run-report-4": "run-report", "publish-model-2": "publish-model"}
RETRIED = {"synthetic-generation", "critique-filter", "sft", "sft-2", "mt-bench-eval", "mt-bench-eval-gpu"}
NOT_RETRIED = {"preflight", "taxonomy-diff", "seed-extraction", "nothing-to-do", "publish-model", "finalize-run",
               "sft-resources",
               "run-report", "run-report-2", "publish-model-2", "run-report-3", "run-report-4"}


def _tasks(spec: dict) -> dict[str, tuple[str, dict]]:
    """Every task of every DAG (root and condition branches): name -> (enclosing DAG, task)."""
    out = {}
    for dag_name, comp in [("root", spec["root"]), *spec["components"].items()]:
        for name, task in comp.get("dag", {}).get("tasks", {}).items():
            out[name] = (dag_name, task)
    return out


def _leaf_tasks(spec: dict) -> dict[str, dict]:
    """Tasks that run a container (not condition/branch groups)."""
    return {n: t for n, (_, t) in _tasks(spec).items() if not n.startswith(("condition", "exit-handler", "for-loop"))}


def test_every_task_has_an_explicit_caching_decision_and_nothing_is_cached():
    spec = compiled_docs()[0]
    tasks = _leaf_tasks(spec)
    assert set(tasks) == RETRIED | NOT_RETRIED
    for name, task in tasks.items():
        logical = LOGICAL.get(name, name)
        enabled, reason = lab_pipeline.CACHING[logical]
        assert reason.strip(), f"{logical}: no reason given for its caching policy"
        # set_caching_options(False) compiles to an explicit (empty) cachingOptions; the default is enableCache
        assert "cachingOptions" in task, name
        assert task["cachingOptions"].get("enableCache", False) is enabled is False, name
    assert set(lab_pipeline.CACHING) == {LOGICAL.get(n, n) for n in tasks}


def test_retries_with_backoff_on_generation_critique_training_and_evaluation():
    tasks = _leaf_tasks(compiled_docs()[0])
    for name in RETRIED:
        policy = tasks[name].get("retryPolicy")
        assert policy and policy["maxRetryCount"] >= 2, name
        assert policy["backoffDuration"] and policy["backoffFactor"] > 1 and policy["backoffMaxDuration"], name
    for name in NOT_RETRIED:  # cheap or not idempotent (publishing twice would register two versions)
        assert "retryPolicy" not in tasks[name], name


def test_cpu_and_memory_requests_and_limits_come_from_parameters_with_defaults():
    spec = compiled_docs()[0]
    params = spec["root"]["inputDefinitions"]["parameters"]
    executors = spec["deploymentSpec"]["executors"]
    assert {f"exec-{t['componentRef']['name'].removeprefix('comp-')}" for t in _leaf_tasks(spec).values()} == set(executors)
    for name, executor in executors.items():
        resources = executor["container"].get("resources", {})
        for field in ("resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest", "resourceMemoryLimit"):
            value = resources.get(field, "")
            assert "pipelinechannel--" in value, f"{name}: {field} is not a pipeline parameter ({value!r})"
            param = value.split("pipelinechannel--", 1)[1].split("'", 1)[0]
            if param.startswith("sft-resources-"):  # the SFT pods: from the task that gets the training parameters
                assert name in ("exec-sft", "exec-sft-2"), (name, field, param)
                continue
            assert params[param].get("defaultValue"), f"{param} has no default"
    sft_plan = _tasks(spec)["sft-resources"][1]["inputs"]["parameters"]
    assert sft_plan["training_memory_limit"]["componentInputParameter"] == "pipelinechannel--training_memory_limit"
    assert params["training_memory_limit"]["defaultValue"] == "128Gi"


def test_the_sft_pods_gpus_memory_and_node_come_from_the_sft_resources_task():
    """Job mode must not hold GPUs in the launcher pod: its GPU count, CPU/memory and node selector are outputs of
    sft-resources (0 GPUs, small requests, no node selector when a TrainJob/PyTorchJob trains)."""
    spec, platform = compiled_docs()[0], compiled_docs()[1]
    tasks = _tasks(spec)
    resources = spec["deploymentSpec"]["executors"]["exec-sft"]["container"]["resources"]
    assert resources["accelerator"]["resourceCount"] == "{{$.inputs.parameters['pipelinechannel--sft-resources-gpus']}}"
    for task in ("sft", "sft-2"):
        assert "sft-resources" in tasks[task][1]["dependentTasks"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-sft"]
    assert k8s["nodeSelector"]["nodeSelectorJson"]["taskOutputParameter"] == {
        "outputParameterKey": "node_selector", "producerTask": "sft-resources"}
    assert {"name": "LABPIPE_SERVICE_ACCOUNT", "fieldPath": "spec.serviceAccountName"} in k8s["fieldPathAsEnv"]


def _exit_handler(spec: dict) -> tuple[str, dict]:
    """(group task name, its DAG's tasks): the group every task but the exit task runs in."""
    root = spec["root"]["dag"]["tasks"]
    [group] = [n for n in root if n.startswith("exit-handler")]
    return group, spec["components"][root[group]["componentRef"]["name"]]["dag"]["tasks"]


def test_exit_handler_closes_the_run_whatever_happened():
    spec = compiled_docs()[0]
    root = spec["root"]["dag"]["tasks"]
    group, _ = _exit_handler(spec)
    assert set(root) == {group, "finalize-run"}
    final = root["finalize-run"]
    assert final["dependentTasks"] == [group]
    assert final["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"  # runs on failure too
    assert final["inputs"]["parameters"]["status"]["taskFinalStatus"]["producerTask"] == group


def test_preflight_runs_first_and_everything_else_after_it():
    spec = compiled_docs()[0]
    _, inner = _exit_handler(spec)
    assert "dependentTasks" not in inner["preflight"]
    assert inner["taxonomy-diff"]["dependentTasks"] == ["preflight"]
    # every other entry of the handler's DAG hangs off the diff (and so off the preflight)
    for name, task in inner.items():
        if name not in ("preflight", "taxonomy-diff"):
            assert "taxonomy-diff" in task.get("dependentTasks", []), name
    # ... and every other task sits inside those branches
    tasks = _tasks(spec)
    top = {n for n, (dag, _) in tasks.items() if dag in ("root", "comp-exit-handler-1")}
    assert top == set(inner) | set(spec["root"]["dag"]["tasks"])


def test_weekly_defaults_and_the_nothing_to_do_branch():
    spec = compiled_docs()[0]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["base"]["defaultValue"] == "production"
    assert params["scope"]["defaultValue"] == "taxonomy"
    assert params["force"]["defaultValue"] is False
    tasks = _tasks(spec)
    conditions = {n: t["triggerPolicy"]["condition"] for n, (_, t) in tasks.items()
                  if "condition" in t.get("triggerPolicy", {})}
    train = [n for n, c in conditions.items() if c.startswith("inputs") and "taxonomy-diff-Output" in c]
    otherwise = [n for n, c in conditions.items() if c.startswith("!(") and "taxonomy-diff-Output" in c]
    assert len(train) == 1 and len(otherwise) == 1
    assert "nothing-to-do" in spec["components"][f"comp-{otherwise[0]}"]["dag"]["tasks"]
    assert "sft" in spec["components"][f"comp-{train[0]}"]["dag"]["tasks"]


def test_secrets_reach_preflight_and_diff():
    platform = compiled_docs()[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    envs = {name: {k["envVar"] for s in e.get("secretAsEnv", []) for k in s["keyToEnv"]} for name, e in platform.items()}
    assert {"TEACHER_API_KEY", "JUDGE_API_KEY", "AWS_ACCESS_KEY_ID", "GIT_PASSWORD"} <= envs["exec-preflight"]
    assert {"TEACHER_MODEL", "GIT_PASSWORD"} <= envs["exec-taxonomy-diff"]


def test_parameters_used_inside_branches_are_passed_into_them():
    """Resource and GPU parameters reach the tasks inside dsl.If branches (KFP 2.17 needs them declared)."""
    spec = compiled_docs()[0]
    for name, comp in spec["components"].items():
        if "dag" not in comp or name == "root":
            continue
        declared = set(comp.get("inputDefinitions", {}).get("parameters", {}))
        for task_name, task in comp["dag"]["tasks"].items():
            for key, value in task.get("inputs", {}).get("parameters", {}).items():
                parent = value.get("componentInputParameter")
                if parent:
                    assert parent in declared, f"{name}/{task_name}: {key} reads {parent}, not passed in"


def test_the_data_only_pipeline_caches_nothing_either(tmp_path):
    from kfp import compiler

    path = tmp_path / "generation.yaml"
    compiler.Compiler().compile(lab_pipeline.generation_pipeline, str(path))
    tasks = _leaf_tasks(next(yaml.safe_load_all(path.read_text())))
    assert {"taxonomy-diff", "seed-extraction", "synthetic-generation", "critique-filter"} <= set(tasks)
    for name, task in tasks.items():
        assert task["cachingOptions"].get("enableCache", False) is False, name
