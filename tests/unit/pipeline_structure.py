"""A normalized structural view of a compiled KFP pipeline (IR YAML), for snapshot tests.

What a task is in the pipeline, without what KFP generates around it: each task is named by the chain of
display names from the root (`lab/something to train/5 knowledge SFT`), never by KFP's generated keys
(`sft-2`, `condition-13`, `comp-run-report-3`), and every reference to a generated key (producer tasks,
dependencies, `pipelinechannel--<task>-<output>` in conditions and resource placeholders) is rewritten to that
name. Kept per task: the component (its base name, image, function, inputs and outputs with types and
defaults, resources, env), where each input comes from, the trigger condition, iterator, retry and caching
policy, dependencies and the Kubernetes platform config (secrets, config maps, volumes, node selectors,
tolerations, field-path env). Left out: the component's embedded source code (moving code from a component
into the library does not change the pipeline) and the order of dict keys and lists that KFP does not
order by meaning.
"""

from __future__ import annotations

import json
import re
from typing import Any

_CHANNEL = "pipelinechannel--"


def _base(component: str) -> str:
    return re.sub(r"-\d+$", "", component.removeprefix("comp-"))


def _sorted(items: list) -> list:
    return sorted(items, key=lambda x: json.dumps(x, sort_keys=True))


def _deep_sort(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_sort(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return _sorted([_deep_sort(v) for v in value])
    return value


def structure(docs: list[dict]) -> dict[str, Any]:
    """`docs`: the YAML documents of a compiled pipeline (the spec, and the platform spec when present)."""
    spec = docs[0]
    platform = next((d for d in docs[1:] if d and "platforms" in d), {})
    k8s = platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})
    executors = spec["deploymentSpec"]["executors"]
    components = spec["components"]

    names: dict[str, str] = {}  # generated task key -> display path (task keys are unique in a compiled spec)

    def name_tasks(dag: dict, path: str) -> None:
        seen: dict[str, int] = {}
        for key, task in sorted(dag.get("tasks", {}).items()):
            shown = task.get("taskInfo", {}).get("name") or key
            if re.fullmatch(r"condition-branches-\d+", shown):
                shown = "branches"
            seen[shown] = seen.get(shown, 0) + 1
            full = f"{path}/{shown}" if path else shown
            if seen[shown] > 1:
                full += f"#{seen[shown]}"
            names[key] = full
            inner = components[task["componentRef"]["name"]].get("dag")
            if inner:
                name_tasks(inner, full)

    name_tasks(spec["root"]["dag"], "")
    key_re = re.compile(
        r"(?<="
        + _CHANNEL
        + r")("
        + "|".join(re.escape(k) for k in sorted(names, key=len, reverse=True))
        + r")-"
    )

    def rename(text: str) -> str:
        return key_re.sub(lambda m: f"<{names[m.group(1)]}>-", text)

    def renamed(value: Any) -> Any:
        if isinstance(value, str):
            return rename(value)
        if isinstance(value, dict):
            return {k if k in ("", None) else rename(k): renamed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [renamed(v) for v in value]
        return value

    def source(value: dict) -> dict:
        value = dict(value)
        if "producerTask" in value:
            value["producerTask"] = names.get(value["producerTask"], value["producerTask"])
        for field in ("taskOutputParameter", "taskOutputArtifact"):
            if field in value:
                value[field] = source(value[field])
        return renamed(value)

    def definitions(defs: dict) -> dict:
        return renamed(_deep_sort(defs))

    tasks: dict[str, Any] = {}

    def walk(dag: dict) -> None:
        for key, task in dag.get("tasks", {}).items():
            comp = components[task["componentRef"]["name"]]
            entry: dict[str, Any] = {
                "component": _base(task["componentRef"]["name"]),
                "inputs": {
                    kind: {
                        rename(n): source(v) for n, v in sorted(task.get("inputs", {}).get(kind, {}).items())
                    }
                    for kind in ("parameters", "artifacts")
                    if task.get("inputs", {}).get(kind)
                },
                "dependsOn": sorted(names.get(d, d) for d in task.get("dependentTasks", [])),
                "component_inputs": definitions(comp.get("inputDefinitions", {})),
                "component_outputs": definitions(comp.get("outputDefinitions", {})),
            }
            for field in (
                "triggerPolicy",
                "iteratorPolicy",
                "parameterIterator",
                "retryPolicy",
                "cachingOptions",
            ):
                if field in task:
                    entry[field] = renamed(_deep_sort(task[field]))
            label = comp.get("executorLabel")
            if label:
                container = dict(executors[label]["container"])
                entry["image"] = container.get("image")
                entry["function"] = container.get("args", [])[-1:]
                entry["resources"] = renamed(_deep_sort(container.get("resources", {})))
                entry["env"] = renamed(_deep_sort(container.get("env", [])))
                entry["kubernetes"] = renamed(_deep_sort(k8s.get(label, {})))
            tasks[names[key]] = entry
            if comp.get("dag"):
                walk(comp["dag"])

    walk(spec["root"]["dag"])
    return {
        "name": spec.get("pipelineInfo", {}).get("name"),
        "inputs": _deep_sort(spec["root"].get("inputDefinitions", {})),
        "outputs": _deep_sort(spec["root"].get("outputDefinitions", {})),
        "platform_pipeline": _deep_sort(
            {
                k: v
                for k, v in platform.get("platforms", {}).get("kubernetes", {}).items()
                if k != "deploymentSpec"
            }
        ),
        "tasks": dict(sorted(tasks.items())),
    }
