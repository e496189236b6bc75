"""The pipeline's evaluation step as one library call: pick the skill phase's checkpoint, run MT-Bench
against the base, and let the gate decide. The KFP component only maps artifacts onto this.

The chosen checkpoint is recorded in the decision as a path *relative to the training output* (or, for a
checkpoint in the durable location of a slim Model artifact, its URI)
(`model` or `checkpoints/checkpoint-<step>`): artifact paths differ from pod to pod in a cluster, so the
publish step resolves it against its own copy of the Model artifact.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labpipe import storage
from labpipe.errors import UserError
from labpipe.evaluation.engines import EngineConfig
from labpipe.evaluation.gate import GateConfig, run_gate
from labpipe.evaluation.select import STRATEGIES, SelectConfig, select_checkpoint
from labpipe.evaluation.stage import EvalConfig, run_mt_bench
from labpipe.llm.options import ClientOptions, model_spec
from labpipe.models.loading import resolve_model_dir


@dataclass
class CandidateEvalConfig:
    training_out: str  # the skill phase's output directory (model/, checkpoints/)
    decision_out: str  # the gate's decision JSON
    base_model: str = ""
    judge: ClientOptions = field(default_factory=ClientOptions)  # empty endpoint/model: JUDGE_* (the secret)
    questions: str = ""
    max_questions: int = 0
    max_new_tokens: int = 1024
    checkpoint_selection: str = "last"  # "last": the final model; "best": score every checkpoint
    engine: str = "hf"  # what answers: hf (in-process), vllm (a server on the task's GPUs), llamacpp (evaluation/engines.py)
    engine_gpus: int = 0  # vLLM tensor-parallel size; 0 = every GPU the task was given
    cache: str = "off"  # answers and verdicts reused across runs: the generation cache ("" = local, s3://...)
    production_model_name: str = ""
    tolerance: float = 0.0
    judge_attempts: int = 3  # tries per judgment before it is excluded
    run_id: str = ""
    tracking_uri: str = ""


@dataclass
class CandidateEvalResult:
    metrics: dict[str, Any]
    decision: dict[str, Any]
    report_html: Path
    selected: str  # relative to training_out, or the URI of a checkpoint in the durable location


def evaluate_candidate(cfg: CandidateEvalConfig) -> CandidateEvalResult:
    """In a pipeline, a retried task after a deterministic failure (an invalid evaluation, a judge that
    fails the same way) ends at once with the same problems (retry_guard)."""
    from labpipe.retry_guard import guard

    with guard("mt_bench_eval", run_id=cfg.run_id, tracking_uri=cfg.tracking_uri):
        return _evaluate_candidate(cfg)


def _evaluate_candidate(cfg: CandidateEvalConfig) -> CandidateEvalResult:
    if cfg.checkpoint_selection not in STRATEGIES:
        raise UserError(
            f"checkpoint_selection must be one of {', '.join(STRATEGIES)}, not {cfg.checkpoint_selection!r}",
            fix="use 'last' (the final model) or 'best'",
        )
    spec = model_spec(cfg.judge, "judge")
    work = Path(tempfile.mkdtemp(prefix="mt-bench-"))
    eval_cfg = EvalConfig(
        model="",
        base_model=cfg.base_model,
        judge=replace(cfg.judge, endpoint=spec.target, model=spec.model or "", api_key_env=spec.api_key_env),
        questions=cfg.questions,
        max_questions=int(cfg.max_questions),
        max_new_tokens=int(cfg.max_new_tokens),
        judge_attempts=int(cfg.judge_attempts),
        out=str(work / "eval"),
        run_id=cfg.run_id,
        tracking_uri=cfg.tracking_uri,
        engine=EngineConfig(kind=cfg.engine, gpus=int(cfg.engine_gpus)),
        cache=cfg.cache,
    )
    eval_cfg.engine.validate()  # before any checkpoint is fetched
    root = Path(cfg.training_out)
    model = resolve_model_dir(cfg.training_out)
    chosen = ""  # set when the chosen checkpoint lies outside the training output (durable checkpoints)
    selection_costs: dict[str, int] = {}
    if cfg.checkpoint_selection == "best":
        selection = select_checkpoint(
            SelectConfig(
                model_dir=cfg.training_out, out=str(work / "selection"), eval=eval_cfg, strategy="best"
            )
        )
        model = Path(selection["selected_local"])
        selection_costs = {
            f"selection.{k}": sum(c[k] for c in selection["costs"].values())
            for k in ("engine_starts", "answers_sent", "judge_requests_sent")
        }
        if not model.is_relative_to(root):  # a checkpoint from the durable location: record its URI
            chosen = selection["selected"]
    eval_cfg.model = str(model)
    metrics = {**run_mt_bench(eval_cfg), **selection_costs}
    decision = run_gate(
        GateConfig(
            metrics=str(work / "eval" / "metrics.json"),
            out=cfg.decision_out,
            production_model_name=cfg.production_model_name,
            tolerance=float(cfg.tolerance),
            run_id=cfg.run_id,
            tracking_uri=cfg.tracking_uri,
        )
    )
    selected = chosen or (model.relative_to(root).as_posix() if model.is_relative_to(root) else str(model))
    decision = {
        **json.loads(storage.read_text(cfg.decision_out)),
        "candidate_subpath": selected,
        "checkpoint_selection": cfg.checkpoint_selection,
    }
    storage.write_text(cfg.decision_out, json.dumps(decision, indent=2) + "\n")
    return CandidateEvalResult(metrics, decision, work / "eval" / "report.html", selected)


def published_model_dir(training_out: str, decision_path: str) -> str:
    """The model directory the gate approved: the decision's checkpoint, resolved in this pod's copy."""
    decision = json.loads(storage.read_text(decision_path))
    sub = decision.get("candidate_subpath")
    if sub and (storage.is_s3(sub) or Path(sub).is_absolute()):  # a checkpoint in the durable location
        return sub
    return str(Path(training_out) / sub) if sub else str(resolve_model_dir(training_out))


def evaluation_task(candidate, metrics, report, decision, **params) -> bool:
    """The KFP evaluation task (components/mt_bench_eval: one per image, CPU and GPU): `evaluate_candidate`,
    its figures onto the task's Metrics, its page onto the HTML output, the verdict onto the decision
    artifact and into the run's lineage. The artifacts are KFP's (`path`, `uri`, `metadata`, `log_metric`);
    returns `publish` for the pipeline's dsl.If."""
    import shutil

    from labpipe.runs.lineage import record

    result = evaluate_candidate(
        CandidateEvalConfig(training_out=candidate.path, decision_out=decision.path, **params)
    )
    for key, value in result.metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and "." in key:
            metrics.log_metric(key, float(value))  # under kfp.local, Metrics exist only as this metadata
    metrics.log_metric("invalid", float(result.metrics["invalid"]))
    shutil.copyfile(result.report_html, report.path)
    verdict = {k: result.decision[k] for k in ("publish", "reasons", "candidate_subpath")}
    decision.metadata.update(verdict)
    record(
        "mt_bench_eval",
        {**result.metrics, **verdict},
        pipeline_run_id=params.get("run_id", ""),
        tracking_uri=params.get("tracking_uri", ""),
        inputs={"candidate": candidate.uri, "base_model": params.get("base_model", ""),
                "questions": params.get("questions", "")},
        outputs={"report": report.uri, "decision": decision.uri},
    )
    return bool(result.decision["publish"])
