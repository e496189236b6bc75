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
    checkpoint_selection: str = "last",
    judge_attempts: int = 3,
    context_length: int = 0,
) -> bool:
    """MT-Bench for the skill phase's model (or its best checkpoint) vs the base; report; gate (for dsl.If).

    judge_secret names the Kubernetes secret mounted as JUDGE_ENDPOINT / JUDGE_MODEL / JUDGE_API_KEY.
    """
    from labpipe.errors import clean_user_errors

    clean_user_errors()  # a UserError prints its problems, no traceback
    import shutil

    from labpipe.evaluation.candidate import CandidateEvalConfig, evaluate_candidate
    from labpipe.lineage import record

    result = evaluate_candidate(
        CandidateEvalConfig(
            training_out=candidate.path,
            decision_out=decision.path,
            base_model=base_model,
            judge=judge,
            judge_model=judge_model,
            judge_secret=judge_secret,
            questions=questions,
            max_questions=max_questions,
            max_new_tokens=max_new_tokens,
            checkpoint_selection=checkpoint_selection,
            judge_attempts=int(judge_attempts),
            context_length=int(context_length),
            production_model_name=production_model_name,
            tolerance=tolerance,
            run_id=run_id,
            tracking_uri=tracking_uri,
        )
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
        pipeline_run_id=run_id,
        tracking_uri=tracking_uri,
        inputs={"candidate": candidate.uri, "base_model": base_model, "questions": questions},
        outputs={"report": report.uri, "decision": decision.uri},
    )
    return bool(result.decision["publish"])
