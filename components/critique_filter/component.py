"""KFP component: judge and filter the generated examples; mix the knowledge and skills training sets."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output
from labpipe.components.images import image_for


@dsl.component(base_image=image_for("generation"))
def critique_filter(
    generated: Input[list[Dataset]],
    judge: str,
    judge_model: str,
    judge_secret: str,
    samples_per_skill_leaf: int,
    seed: int,
    run_id: str,
    tracking_uri: str,
    knowledge_set: Output[Dataset],
    skills_set: Output[Dataset],
    report: Output[Markdown],
    profile: str = "lab",
    timeout_s: float = 120.0,
    max_retries: int = 6,
    generation_cache: str = "",
    response_format: str = "auto",
    max_failed_share: float = 0.02,
    context_length: int = 0,
    revision: str = "",
):
    """Filter with `profile` (lab | smoke); empty judge/judge_model fall back to JUDGE_* env vars.

    generated: the generation shards (dsl.Collected over the fan-out), merged into one set of records.

    judge_secret names the Kubernetes secret mounted as JUDGE_ENDPOINT / JUDGE_MODEL / JUDGE_API_KEY.
    knowledge_set.path and skills_set.path are messages-JSONL files; report.path is the yield report.
    generation_cache: shared reply cache for judge calls (an s3:// prefix on a cluster; "" = local).
    """
    from labpipe.errors import clean_user_errors

    clean_user_errors()  # a UserError prints its problems, no traceback

    from labpipe.critique.stage import CritiqueConfig, run_critique
    from labpipe.llm.options import ClientOptions

    meta = run_critique(
        CritiqueConfig(
            generated=[g.path for g in generated],
            out="",  # a temporary directory, removed when done (the sets go to the artifact paths)
            judge=ClientOptions(
                endpoint=judge,
                model=judge_model,
                secret=judge_secret,
                timeout_s=float(timeout_s),
                max_retries=int(max_retries),
                response_format=response_format,
                context_length=int(context_length),
                revision=revision,
            ),
            profile=profile,
            generation_cache=generation_cache,
            max_failed_share=float(max_failed_share),
            samples_per_skill_leaf=samples_per_skill_leaf,
            seed=seed,
            knowledge_out=knowledge_set.path,
            skills_out=skills_set.path,
            report_md_out=report.path,
            run_id=run_id,
            tracking_uri=tracking_uri,
        )
    )
    knowledge_set.metadata.update({k: v for k, v in meta.items() if k.startswith("knowledge") or k == "kept"})
    skills_set.metadata.update(
        {k: v for k, v in meta.items() if k.startswith("skills") or k == "knowledge_replay"}
    )
    report.metadata.update(meta)
    from labpipe.runs.lineage import record

    record(
        "critique_filter",
        meta,
        pipeline_run_id=run_id,
        tracking_uri=tracking_uri,
        inputs={"generated": ",".join(g.uri for g in generated)},
        outputs={"knowledge_set": knowledge_set.uri, "skills_set": skills_set.uri, "report": report.uri},
    )
