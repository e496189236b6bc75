"""What produced what: the taxonomy commit, seeds, data, base model and scores behind a model.

Every stage records its artifact metadata (counts, digests, commits, URIs) as `lineage.<stage>.<key>`
tags on the pipeline's MLflow run, next to the stage's own nested run. `labpipe lineage` answers from
there: given a pipeline run id, an MLflow run id, or a registered model (`name@alias` or
`name/version`), it prints the chain from taxonomy commit to published model.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labpipe.errors import UserError
from labpipe.runs import datasets, stages, tracking

LINEAGE_PREFIX = "lineage."


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

    stage = stages.canonical(stage)
    client = tracking.mlflow_client(uri)
    _, parent = tracking.pipeline_context(client, pipeline_run_id, experiment)  # DSP's parent, or labpipe's
    metadata = {**metadata, **_summaries(stage, outputs or {})}
    refs = stage_datasets(stage, metadata, inputs or {}, outputs or {})
    metadata.update({f"dataset.{d.name}.sha256": d.digest for d in refs if d.digest})
    tags = flatten({"metadata": dict(metadata), "inputs": dict(inputs or {}), "outputs": dict(outputs or {})},
                   f"{LINEAGE_PREFIX}{stage}.")
    client.log_batch(parent, tags=[RunTag(k, v) for k, v in tags.items()])
    datasets.log_datasets(stage, refs, pipeline_run_id=pipeline_run_id, tracking_uri=uri, experiment=experiment)


# Artifact names that are datasets, per direction: name in record()'s inputs/outputs -> MLflow context.
DATASET_INPUTS = {"diff": "input", "seeds": "input", "generated": "input", "data": "training",
                  "questions": "evaluation"}
DATASET_OUTPUTS = {"diff", "seeds", "generated", "knowledge_set", "skills_set"}
TRAINING_SET = {"knowledge_sft": "knowledge_set", "skill_sft": "skills_set"}  # what `data` is, per phase
PINNED_QUESTIONS = "fastchat:data/mt_bench/question.jsonl (pinned in labpipe.evaluation.sources)"


def stage_datasets(stage: str, metadata: Mapping[str, Any], inputs: Mapping[str, str],
                   outputs: Mapping[str, str]) -> list[datasets.DatasetRef]:
    """The datasets `stage` read and wrote (with digests) from its record() inputs/outputs."""
    refs = []
    if inputs.get("taxonomy"):
        refs.append(datasets.DatasetRef("taxonomy", inputs["taxonomy"], str(metadata.get("taxonomy_commit", "")),
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
        refs.append(datasets.DatasetRef(label, uri, digest or datasets.dataset_digest(uri), context))
    for name in DATASET_OUTPUTS & set(outputs):
        refs.append(datasets.DatasetRef(name, outputs[name], datasets.dataset_digest(outputs[name]), "output"))
    return refs


def _summaries(stage: str, outputs: Mapping[str, str]) -> dict[str, Any]:
    """What the chain needs that a stage's metadata lacks: the changed leaf ids of the taxonomy diff."""
    if stage != "taxonomy_diff" or "diff" not in outputs:
        return {}
    path = datasets.local_view(outputs["diff"])
    if path is None or not (path / "diff.json").is_file():
        return {}
    doc = json.loads((path / "diff.json").read_text())
    ids = [f"{e['leaf_id']}" + ("" if e.get("status") in (None, "added", "modified") else f" ({e['status']})")
           for e in doc.get("leaves", []) if e.get("status") != "unchanged"]  # scope=taxonomy lists every leaf
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
    parent_tags: dict[str, str] = field(default_factory=dict)  # labpipe.* tags of the pipeline run (status...)
    registered: list[dict[str, Any]] = field(default_factory=list)  # versions this run published, with aliases

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline_run_id": self.pipeline_run_id, "mlflow_run_id": self.mlflow_run_id, "status": self.status,
            "model": self.model, "stages": self.stages, "stage_runs": self.stage_runs,
            "parent_tags": self.parent_tags, "registered": self.registered, "chain": chain(self),
        }


MLFLOW_RUN_ID = re.compile(r"[0-9a-f]{32}")


def parse_model_ref(model: str) -> tuple[str, str, str] | None:
    """`name@alias`, `models:/name@alias`, `models:/name/N`, `name/N` -> (name, alias, version); else None."""
    ref = model[len("models:/"):] if model.startswith("models:/") else model
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return (name, alias, "") if name and alias else None
    if "/" in ref:
        name, number = ref.rsplit("/", 1)
        return (name, "", number) if name and number.isdigit() else None
    return None


def _resolve_model(client, model: str) -> tuple[str, dict[str, str]]:
    """A registered model reference (see parse_model_ref) -> (source MLflow run id, model info)."""
    parsed = parse_model_ref(model)
    if parsed is None:
        raise UserError(f"{model}: expected NAME@ALIAS, models:/NAME/VERSION or models:/NAME@ALIAS",
                        fix="e.g. labpipe-model@production")
    name, alias, number = parsed
    try:
        version = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, number)
    except Exception as exc:
        raise UserError(f"{model}: not found in the model registry ({str(exc).splitlines()[0][:200]})",
                        fix="check the name and alias/version with the MLflow UI") from None
    info = {"name": version.name, "version": str(version.version), "source": version.source or "",
            "run_id": version.run_id or ""}
    if not version.run_id:
        raise UserError(f"{model}: the model version records no MLflow run, so its lineage is unknown")
    return version.run_id, info


def describe_any(tracking_uri: str, target: str, experiment: str = tracking.DEFAULT_EXPERIMENT) -> Lineage:
    """Lineage of `target`: a registered model (name@alias, models:/name/N), an MLflow run id, a pipeline run id."""
    if parse_model_ref(target) is not None:
        return describe(tracking_uri, model=target, experiment=experiment)
    if MLFLOW_RUN_ID.fullmatch(target):
        try:
            return describe(tracking_uri, run_id=target, experiment=experiment)
        except UserError:
            pass  # a pipeline run id may look like an MLflow one
    return describe(tracking_uri, pipeline_run_id=target, experiment=experiment)


def _registered_versions(client, lin: Lineage) -> list[dict[str, Any]]:
    """The registered versions this pipeline run published (from the publish stage's lineage), with aliases."""
    pub = lin.stages.get("publish_model", {})
    name, number = pub.get("metadata.registered_model"), pub.get("metadata.version")
    if lin.model:
        name, number = lin.model["name"], lin.model["version"]
    if not name or not number:
        return []
    try:
        aliases = client.get_registered_model(name).aliases or {}
        version = client.get_model_version(name, number)
    except Exception:  # deleted since: the lineage tags still say what was published
        return [{"name": name, "version": str(number), "aliases": [], "source": "", "missing": True}]
    return [{"name": name, "version": str(number), "source": version.source or "",
             "aliases": sorted(a for a, v in aliases.items() if str(v) == str(number)),
             "tags": dict(version.tags or {})}]


def describe(tracking_uri: str, *, pipeline_run_id: str = "", run_id: str = "", model: str = "",
             experiment: str = tracking.DEFAULT_EXPERIMENT) -> Lineage:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    model_info: dict[str, str] = {}
    if model:
        run_id, model_info = _resolve_model(client, model)
    experiment_ids: list[str] = []
    if run_id:
        try:
            found = client.get_run(run_id)
        except Exception:
            raise UserError(f"MLflow run {run_id}: not found at {tracking_uri}", fix="check the run id") from None
        tags, experiment_ids = found.data.tags, [found.info.experiment_id]  # DSP's experiment, or labpipe's
        pipeline_run_id = tags.get(tracking.PIPELINE_RUN_TAG, "")
        if not pipeline_run_id:
            raise UserError(f"MLflow run {run_id} was not made by a labpipe pipeline (no {tracking.PIPELINE_RUN_TAG} tag)")
    if not pipeline_run_id:
        raise UserError("say which model or run: labpipe lineage NAME@ALIAS | models:/NAME/N | MLFLOW_RUN_ID | "
                        "PIPELINE_RUN_ID", fix="e.g. labpipe lineage labpipe-model@production")
    if not experiment_ids:
        exp = client.get_experiment_by_name(experiment)
        experiment_ids = [exp.experiment_id] if exp else []
    wanted = f"tags.`{tracking.PIPELINE_RUN_TAG}` = '{pipeline_run_id}'"
    runs = client.search_runs(experiment_ids, filter_string=wanted, max_results=500) if experiment_ids else []
    parent = next((r for r in runs if r.data.tags.get(tracking.ROLE_TAG) == "pipeline"), None)
    if parent is None:  # recorded in Data Science Pipelines' experiment (its MLflow integration): look everywhere
        everywhere = [e.experiment_id for e in client.search_experiments(max_results=1000)]
        runs = client.search_runs(everywhere, filter_string=wanted, max_results=500) if everywhere else []
        parent = next((r for r in runs if r.data.tags.get(tracking.ROLE_TAG) == "pipeline"), None)
    if parent is None:
        raise UserError(f"pipeline run {pipeline_run_id}: no MLflow record at {tracking_uri}",
                        fix="check MLFLOW_TRACKING_URI and the pipeline run id")
    result = Lineage(pipeline_run_id, parent.info.run_id, parent.info.status, model=model_info)
    for key, value in sorted(parent.data.tags.items()):
        if key.startswith(LINEAGE_PREFIX):
            stage, _, rest = key[len(LINEAGE_PREFIX):].partition(".")
            result.stages.setdefault(stages.canonical(stage), {})[rest] = value
    for run in runs:
        if run.data.tags.get(tracking.ROLE_TAG) == "stage":
            name = stages.canonical(run.data.tags.get(tracking.STAGE_TAG, run.info.run_name))
            if name in result.stage_runs and result.stage_runs[name]["start_time"] > run.info.start_time:
                continue  # a retried task made several runs: the newest counts
            result.stage_runs[name] = {
                "run_id": run.info.run_id, "status": run.info.status, "metrics": dict(run.data.metrics),
                "start_time": run.info.start_time,
                "datasets": [{"name": d.dataset.name, "digest": d.dataset.digest, "source": d.dataset.source,
                              "context": {t.key: t.value for t in d.tags}.get(datasets.DATASET_CONTEXT_TAG, "")}
                             for d in run.inputs.dataset_inputs],
            }
    result.parent_tags = {k: v for k, v in parent.data.tags.items()
                          if k.startswith("labpipe.") and not k.startswith(LINEAGE_PREFIX)}
    result.registered = _registered_versions(client, result)
    return result


def format_text(lineage: Lineage) -> str:
    lines = [f"pipeline run {lineage.pipeline_run_id}  (MLflow run {lineage.mlflow_run_id}, {lineage.status})"]
    if lineage.model:
        m = lineage.model
        lines.append(f"model {m['name']} version {m['version']}  source {m['source']}")
    for stage in sorted(set(lineage.stages) | set(lineage.stage_runs), key=stages.order):
        run = lineage.stage_runs.get(stage, {})
        lines.append(f"\n{stage}" + (f"  [{run.get('status', '?')}, run {run.get('run_id', '?')}]" if run else ""))
        for key, value in lineage.stages.get(stage, {}).items():
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)


# --- The chain ------------------------------------------------------------------------------------
CHAIN_STEPS = ["taxonomy", "changed_leaves", "seeds", "generated", "kept", "training_sets", "knowledge_model",
               "skills_model", "mt_bench", "gate", "registered"]
CHAIN_LABELS = {"mt_bench": "MT-Bench"}


def _short_digest(value: str | None) -> str:
    return (value or "")[:12] or "?"


def _json_list(value: str | None) -> list:
    try:
        out = json.loads(value or "[]")
        return out if isinstance(out, list) else [out]
    except json.JSONDecodeError:
        return [value]


def _num(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "", "None") else None
    except ValueError:
        return None


def _int(value: str | None) -> str:
    number = _num(value)
    return "?" if number is None else str(int(number))


def chain(lin: Lineage) -> list[dict[str, Any]]:
    """The lineage as one chain of steps, taxonomy to registered version (then the InferenceService it was
    handed to, when the run had `serve`): [{step, text, data}].

    Every step is present; a step the run never reached says so (with the failing stage when known).
    """
    st = lin.stages
    td, se, sg = st.get("taxonomy_diff", {}), st.get("seed_extraction", {}), st.get("synthetic_generation", {})
    cf, ks, ss = st.get("critique_filter", {}), st.get("knowledge_sft", {}), st.get("skill_sft", {})
    ev = st.get("mt_bench_eval", {})
    steps: list[dict[str, Any]] = []

    def add(step: str, recorded: bool, text: str, **data: Any) -> None:
        steps.append({"step": step, "recorded": recorded, "text": text if recorded else "not recorded",
                      "data": data if recorded else {}})

    commit = td.get("metadata.taxonomy_commit", "")
    add("taxonomy", bool(td),
        f"{td.get('inputs.taxonomy', '?')}@{commit[:12] or '?'}, diffed against {td.get('metadata.base', '?')}"
        + (f" ({td['metadata.base_used'][:12]})" if td.get("metadata.base_used") else ""),
        repo=td.get("inputs.taxonomy", ""), commit=commit, base=td.get("metadata.base", ""),
        base_used=td.get("metadata.base_used", ""), merge_base=td.get("metadata.merge_base", ""))
    leaf_ids = td.get("metadata.leaf_ids", "")
    changed = td.get("metadata.leaves_changed", td.get("metadata.leaves"))  # scope=taxonomy: leaves > changed
    add("changed_leaves", bool(td), f"{_int(changed)} leaves: {leaf_ids or '(ids not recorded)'}",
        count=_num(changed), leaf_ids=[x for x in leaf_ids.split(", ") if x])
    seeds_digest = se.get("metadata.dataset.seeds.sha256") or sg.get("metadata.dataset.seeds.sha256", "")
    add("seeds", bool(se), f"{_int(se.get('metadata.records', se.get('metadata.seeds')))} records, "
        f"sha256 {_short_digest(seeds_digest)}", uri=se.get("outputs.seeds", ""), sha256=seeds_digest)
    gen_digest = sg.get("metadata.dataset.generated.sha256", "")
    add("generated", bool(sg),
        f"{_int(sg.get('metadata.records'))} records; requests sent {_int(sg.get('metadata.requests_sent'))}, "
        f"reused {_int(sg.get('metadata.requests_cached'))}; sha256 {_short_digest(gen_digest)}",
        uri=sg.get("outputs.generated", ""), sha256=gen_digest, requests_sent=_num(sg.get("metadata.requests_sent")),
        requests_reused=_num(sg.get("metadata.requests_cached")))
    yld = _num(cf.get("metadata.yield"))
    add("kept", bool(cf), f"{_int(cf.get('metadata.kept'))} of {_int(cf.get('metadata.generated'))}"
        + (f" (yield {yld:.0%})" if yld is not None else ""),
        kept=_num(cf.get("metadata.kept")), generated=_num(cf.get("metadata.generated")), yield_=yld)
    sets = {name: cf.get(f"metadata.dataset.{name}.sha256", "") for name in ("knowledge_set", "skills_set")}
    add("training_sets", bool(cf), ", ".join(f"{n} sha256 {_short_digest(d)}" for n, d in sets.items()),
        **{n: {"sha256": d, "uri": cf.get(f"outputs.{n}", "")} for n, d in sets.items()})
    skipped = ks.get("metadata.skipped") == "True"
    add("knowledge_model", bool(ks),
        (f"skipped ({ks.get('metadata.reason', 'no knowledge data')}): the base model passes through" if skipped
         else f"{_int(ks.get('metadata.steps'))} steps from {ks.get('inputs.base', '?')}")
        + f" -> {ks.get('outputs.model', '?')}",
        uri=ks.get("outputs.model", ""), base=ks.get("inputs.base", ""), steps=_num(ks.get("metadata.steps")),
        skipped=skipped)
    checkpoint = ev.get("metadata.candidate_subpath", "")
    add("skills_model", bool(ss), f"{_int(ss.get('metadata.steps'))} steps -> {ss.get('outputs.model', '?')}"
        + (f", chosen checkpoint {checkpoint}" if checkpoint else ""),
        uri=ss.get("outputs.model", ""), steps=_num(ss.get("metadata.steps")), checkpoint=checkpoint)
    scores = {m.group(1): _num(v) for k, v in sorted(ev.items())  # metrics are flat: <label>.overall
              if (m := re.fullmatch(r"metadata\.(?:scores\.)?([^.]+)\.overall", k))}
    add("mt_bench", bool(ev), ", ".join(f"{label} {score:.2f}" if score is not None else f"{label} ?"
                                       for label, score in scores.items()) or "no scores (evaluation invalid?)",
        scores=scores, questions_sha256=ev.get("metadata.questions_sha256", ""), judge=ev.get("metadata.judge", ""))
    publish = ev.get("metadata.publish")
    reasons = [str(r) for r in _json_list(ev.get("metadata.reasons"))]
    add("gate", bool(ev), ("publish" if publish == "True" else "do not publish") + (": " + "; ".join(reasons)
                                                                                     if reasons else ""),
        publish=publish == "True", reasons=reasons)
    if lin.registered:
        add("registered", True, "; ".join(
            f"{v['name']} version {v['version']}" + (f" (aliases: {', '.join(v['aliases'])})" if v["aliases"] else "")
            + (f", source {v['source']}" if v.get("source") else "") for v in lin.registered),
            versions=lin.registered)
    else:
        add("registered", False, "")
        if ev and publish != "True":
            steps[-1]["text"] = "nothing registered: the gate said no"
    sv = st.get("serve_model", {})
    if sv:  # only with the `serve` parameter: the InferenceService the published model went to
        where = f"InferenceService {sv.get('metadata.namespace', '?')}/{sv.get('metadata.name', '?')}"
        ready = sv.get("metadata.ready") == "True"
        add("served", True, f"{where} {sv.get('metadata.action', '')}, Ready at {sv.get('metadata.url', '?')}"
            + (f" (revision {sv['metadata.revision']})" if sv.get("metadata.revision") else "") if ready
            else f"{where} does not serve: {sv.get('metadata.reason', '?')}",
            name=sv.get("metadata.name", ""), namespace=sv.get("metadata.namespace", ""), ready=ready,
            url=sv.get("metadata.url", ""), storage_uri=sv.get("metadata.storage_uri", ""),
            revision=sv.get("metadata.revision", ""), reason=sv.get("metadata.reason", ""))
    failed = lin.parent_tags.get("labpipe.failed_stages", "")
    if failed:
        for step in steps:
            if not step["recorded"]:
                step["text"] = f"not reached: {failed} failed"
    return steps


def format_chain(lin: Lineage) -> str:
    """One readable chain: a header line, then one line per step joined by arrows."""
    head = f"pipeline run {lin.pipeline_run_id}  (MLflow run {lin.mlflow_run_id}, {lin.status})"
    if lin.model:
        head += f"\nasked about {lin.model['name']} version {lin.model['version']}"
    width = max(len(s) for s in CHAIN_STEPS)
    lines = [head]
    for i, step in enumerate(chain(lin)):
        label = CHAIN_LABELS.get(step["step"], step["step"].replace("_", " "))
        lines.append(f"{'    ' if i == 0 else ' -> '}{label:<{width}}  {step['text']}")
    return "\n".join(lines)


# --- Provenance of a registered version ---------------------------------------------------------------
def provenance_tags(tracking_uri: str, pipeline_run_id: str, decision: Mapping[str, Any],
                    pipeline_run_name: str = "") -> dict[str, str]:
    """Tags for a registered model version: where it came from, from this pipeline run's lineage records.

    Pipeline run id and name, taxonomy repository, commit and diff base, base model, the digest of every
    dataset the stages recorded, requests sent/reused, the chosen checkpoint, and the gate's decision with
    its reasons. A run with no lineage records (a model published by hand) gets what the decision says.
    """
    reasons = [str(r) for r in decision.get("reasons", [])]
    tags: dict[str, Any] = {
        "labpipe.pipeline_run_id": pipeline_run_id,
        "labpipe.pipeline_run_name": pipeline_run_name,
        "labpipe.gate.publish": bool(decision.get("publish")),
        "labpipe.gate.reasons": " | ".join(reasons),
        "labpipe.checkpoint": decision.get("candidate_subpath", ""),
        "mt_bench.base": decision.get("base"),
        "mt_bench.production": decision.get("production"),
    }
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri and pipeline_run_id:
        try:
            lin = describe(uri, pipeline_run_id=pipeline_run_id)
        except UserError:
            lin = None
        if lin is not None:
            td, sg = lin.stages.get("taxonomy_diff", {}), lin.stages.get("synthetic_generation", {})
            tags.update({
                "labpipe.taxonomy.repo": td.get("inputs.taxonomy"),
                "labpipe.taxonomy.commit": td.get("metadata.taxonomy_commit"),
                "labpipe.taxonomy.base": td.get("metadata.base"),
                "labpipe.taxonomy.base_used": td.get("metadata.base_used"),
                "labpipe.taxonomy.merge_base": td.get("metadata.merge_base"),
                "labpipe.taxonomy.leaves_changed": td.get("metadata.leaves_changed", td.get("metadata.leaves")),
                "labpipe.base_model": lin.stages.get("knowledge_sft", {}).get("inputs.base"),
                "labpipe.generation.requests_sent": sg.get("metadata.requests_sent"),
                "labpipe.generation.requests_reused": sg.get("metadata.requests_cached"),
            })
            for stage in lin.stages.values():
                for key, value in stage.items():
                    if key.startswith("metadata.dataset.") and key.endswith(".sha256"):
                        name = key[len("metadata.dataset."):-len(".sha256")]
                        tags[f"labpipe.data.{name}.sha256"] = value
    return {k: str(v)[:5000] for k, v in tags.items() if v not in (None, "")}
