"""KFP component: MT-Bench for the candidate vs the base, the report, and the gate's decision."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Model, Output
from labpipe.components.images import image_for


@dsl.component(base_image=image_for("evaluation"))
def mt_bench_eval(
    candidate: Input[Model],
    base_model: str,
    judge: str,
    judge_model: str,
    judge_secret: str,
    questions: str,
    max_questions: int,
    production_model_name: str,
    tolerance: float,
    run_id: str,
    tracking_uri: str,
    metrics: Output[Metrics],
    report: Output[HTML],
    decision: Output[Artifact],
    max_new_tokens: int = 1024,
) -> bool:
    """Answer and judge MT-Bench for candidate and base; report; decide whether to publish (for dsl.If)."""
    import shutil
    import tempfile
    from pathlib import Path

    from labpipe.evaluation.gate import GateConfig, run_gate
    from labpipe.evaluation.stage import EvalConfig, resolve_model_dir, run_mt_bench
    from labpipe.generation.stage import resolve_model_spec

    # judge_secret names the Kubernetes secret mounted as JUDGE_ENDPOINT / JUDGE_MODEL / JUDGE_API_KEY
    spec = resolve_model_spec(judge, judge_model, role="judge", secret=judge_secret)

    out = Path(tempfile.mkdtemp(prefix="mt-bench-")) / "eval"
    meta = run_mt_bench(
        EvalConfig(
            model=resolve_model_dir(candidate.path),
            base_model=base_model,
            judge=spec.target,
            judge_model=spec.model or "",
            api_key_env=spec.api_key_env,
            questions=questions,
            max_questions=int(max_questions),
            max_new_tokens=int(max_new_tokens),
            out=str(out),
            run_id=run_id,
            tracking_uri=tracking_uri,
        )
    )
    for key, value in meta.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and "." in key:
            metrics.log_metric(key, float(value))  # under kfp.local, Metrics exist only as this metadata
    metrics.log_metric("invalid", float(meta["invalid"]))
    shutil.copyfile(out / "report.html", report.path)
    result = run_gate(
        GateConfig(
            metrics=str(out / "metrics.json"),
            out=decision.path,
            production_model_name=production_model_name,
            tolerance=float(tolerance),
            run_id=run_id,
            tracking_uri=tracking_uri,
        )
    )
    decision.metadata.update({"publish": result["publish"], "reasons": result["reasons"]})
    from labpipe.lineage import record

    record(
        "mt_bench_eval",
        {**meta, "publish": result["publish"], "reasons": result["reasons"]},
        pipeline_run_id=run_id,
        tracking_uri=tracking_uri,
        inputs={"candidate": candidate.uri, "base_model": base_model, "questions": questions},
        outputs={"report": report.uri, "decision": decision.uri},
    )
    return bool(result["publish"])
