"""What produced what: the taxonomy commit, seeds, data, base model and scores behind a model.

Every stage records its artifact metadata (counts, digests, commits, URIs) as `lineage.<stage>.<key>`
tags on the pipeline's MLflow run, next to the stage's own nested run. `labpipe lineage` answers from
there: given a pipeline run id, an MLflow run id, or a registered model (`name@alias` or
`name/version`), it prints the chain from taxonomy commit to published model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labpipe import tracking
from labpipe.errors import UserError

LINEAGE_PREFIX = "lineage."
# Stage order for printing; unknown stages sort after these.
STAGE_ORDER = [
    "taxonomy_diff", "seed_extraction", "synthetic_generation", "critique_filter",
    "knowledge_sft", "skill_sft", "mt_bench_eval", "publish_model",
]


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            out[name] = json.dumps(value, default=str)[:5000]
        else:
            out[name] = str(value)[:5000]
    return out


def record(
    stage: str,
    metadata: Mapping[str, Any],
    *,
    pipeline_run_id: str,
    tracking_uri: str = "",
    inputs: Mapping[str, str] | None = None,
    outputs: Mapping[str, str] | None = None,
    experiment: str = tracking.DEFAULT_EXPERIMENT,
) -> None:
    """Tag the pipeline run with what `stage` consumed and produced. No-op when tracking is off."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri or not pipeline_run_id:
        return
    from mlflow.entities import RunTag
    from mlflow.tracking import MlflowClient

    stage = tracking.canonical_stage(stage)
    client = MlflowClient(tracking_uri=uri)
    parent = tracking.pipeline_run(client, tracking._experiment_id(client, experiment), pipeline_run_id)
    metadata = {**metadata, **_summaries(stage, outputs or {})}
    datasets = stage_datasets(stage, metadata, inputs or {}, outputs or {})
    metadata.update({f"dataset.{d.name}.sha256": d.digest for d in datasets if d.digest})
    tags = flatten({"metadata": dict(metadata), "inputs": dict(inputs or {}), "outputs": dict(outputs or {})},
                   f"{LINEAGE_PREFIX}{stage}.")
    client.log_batch(parent, tags=[RunTag(k, v) for k, v in tags.items()])
    tracking.log_datasets(stage, datasets, pipeline_run_id=pipeline_run_id, tracking_uri=uri, experiment=experiment)


# Artifact names that are datasets, per direction: name in record()'s inputs/outputs -> MLflow context.
DATASET_INPUTS = {"diff": "input", "seeds": "input", "generated": "input", "data": "training",
                  "questions": "evaluation"}
DATASET_OUTPUTS = {"diff", "seeds", "generated", "knowledge_set", "skills_set"}
TRAINING_SET = {"knowledge_sft": "knowledge_set", "skill_sft": "skills_set"}  # what `data` is, per phase
PINNED_QUESTIONS = "fastchat:data/mt_bench/question.jsonl (pinned in labpipe.evaluation.sources)"


def stage_datasets(stage: str, metadata: Mapping[str, Any], inputs: Mapping[str, str],
                   outputs: Mapping[str, str]) -> list[tracking.DatasetRef]:
    """The datasets `stage` read and wrote (with digests) from its record() inputs/outputs."""
    refs = []
    if inputs.get("taxonomy"):
        refs.append(tracking.DatasetRef("taxonomy", inputs["taxonomy"], str(metadata.get("taxonomy_commit", "")),
                                        "input", source_type="git"))
    for name, context in DATASET_INPUTS.items():
        if name not in inputs:
            continue
        uri = inputs[name]
        label = TRAINING_SET.get(stage, name) if name == "data" else name
        digest = ""
        if name == "questions":
            digest = str(metadata.get("questions_sha256", ""))
            uri = uri or PINNED_QUESTIONS
        refs.append(tracking.DatasetRef(label, uri, digest or tracking.dataset_digest(uri), context))
    for name in DATASET_OUTPUTS & set(outputs):
        refs.append(tracking.DatasetRef(name, outputs[name], tracking.dataset_digest(outputs[name]), "output"))
    return refs


def _summaries(stage: str, outputs: Mapping[str, str]) -> dict[str, Any]:
    """What the chain needs that a stage's metadata lacks: the changed leaf ids of the taxonomy diff."""
    if stage != "taxonomy_diff" or "diff" not in outputs:
        return {}
    path = tracking.local_view(outputs["diff"])
    if path is None or not (path / "diff.json").is_file():
        return {}
    doc = json.loads((path / "diff.json").read_text())
    ids = [f"{e['leaf_id']}" + ("" if e.get("status") in (None, "added", "modified") else f" ({e['status']})")
           for e in doc.get("leaves", [])]
    text = ", ".join(ids)
    if len(text) > 4000:
        text = text[:4000].rsplit(", ", 1)[0] + f", ... ({len(ids)} in all)"
    return {"leaf_ids": text, "head_commit": doc.get("head_commit", "")}


@dataclass
class Lineage:
    pipeline_run_id: str
    mlflow_run_id: str
    status: str
    stages: dict[str, dict[str, str]] = field(default_factory=dict)  # stage -> flattened lineage tags
    stage_runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> {run_id, status, metrics}
    model: dict[str, str] = field(default_factory=dict)  # the registered model version asked about, if any

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline_run_id": self.pipeline_run_id, "mlflow_run_id": self.mlflow_run_id, "status": self.status,
            "model": self.model, "stages": self.stages, "stage_runs": self.stage_runs,
        }


def _resolve_model(client, model: str) -> tuple[str, dict[str, str]]:
    """`name@alias` or `name/version` -> (source MLflow run id, model info)."""
    try:
        if "@" in model:
            name, alias = model.split("@", 1)
            version = client.get_model_version_by_alias(name, alias)
        elif "/" in model:
            name, number = model.rsplit("/", 1)
            version = client.get_model_version(name, number)
        else:
            raise UserError(f"{model}: expected NAME@ALIAS or NAME/VERSION", fix="e.g. labpipe-model@production")
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{model}: not found in the model registry ({str(exc).splitlines()[0][:200]})",
                        fix="check the name and alias/version with the MLflow UI") from None
    info = {"name": version.name, "version": str(version.version), "source": version.source or "",
            "run_id": version.run_id or ""}
    if not version.run_id:
        raise UserError(f"{model}: the model version records no MLflow run, so its lineage is unknown")
    return version.run_id, info


def describe(tracking_uri: str, *, pipeline_run_id: str = "", run_id: str = "", model: str = "",
             experiment: str = tracking.DEFAULT_EXPERIMENT) -> Lineage:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    model_info: dict[str, str] = {}
    if model:
        run_id, model_info = _resolve_model(client, model)
    if run_id:
        try:
            tags = client.get_run(run_id).data.tags
        except Exception:
            raise UserError(f"MLflow run {run_id}: not found at {tracking_uri}", fix="check the run id") from None
        pipeline_run_id = tags.get(tracking.PIPELINE_RUN_TAG, "")
        if not pipeline_run_id:
            raise UserError(f"MLflow run {run_id} was not made by a labpipe pipeline (no {tracking.PIPELINE_RUN_TAG} tag)")
    if not pipeline_run_id:
        raise UserError("say which run: --pipeline-run ID, --run MLFLOW_RUN_ID or --model NAME@ALIAS")
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs(
        [exp.experiment_id] if exp else [],
        filter_string=f"tags.`{tracking.PIPELINE_RUN_TAG}` = '{pipeline_run_id}'",
        max_results=500,
    ) if exp else []
    parent = next((r for r in runs if r.data.tags.get(tracking.ROLE_TAG) == "pipeline"), None)
    if parent is None:
        raise UserError(f"pipeline run {pipeline_run_id}: no MLflow record at {tracking_uri}",
                        fix="check MLFLOW_TRACKING_URI and the pipeline run id")
    result = Lineage(pipeline_run_id, parent.info.run_id, parent.info.status, model=model_info)
    for key, value in sorted(parent.data.tags.items()):
        if key.startswith(LINEAGE_PREFIX):
            stage, _, rest = key[len(LINEAGE_PREFIX):].partition(".")
            result.stages.setdefault(stage, {})[rest] = value
    for run in runs:
        if run.data.tags.get(tracking.ROLE_TAG) == "stage":
            result.stage_runs[run.data.tags.get("labpipe.stage", run.info.run_name)] = {
                "run_id": run.info.run_id, "status": run.info.status, "metrics": dict(run.data.metrics),
            }
    return result


def _order(stage: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER), stage)


def format_text(lineage: Lineage) -> str:
    lines = [f"pipeline run {lineage.pipeline_run_id}  (MLflow run {lineage.mlflow_run_id}, {lineage.status})"]
    if lineage.model:
        m = lineage.model
        lines.append(f"model {m['name']} version {m['version']}  source {m['source']}")
    for stage in sorted(set(lineage.stages) | set(lineage.stage_runs), key=_order):
        run = lineage.stage_runs.get(stage, {})
        lines.append(f"\n{stage}" + (f"  [{run.get('status', '?')}, run {run.get('run_id', '?')}]" if run else ""))
        for key, value in lineage.stages.get(stage, {}).items():
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)
