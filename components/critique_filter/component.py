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
    schema_retries: int = 2,
    generation_cache: str = "",
    response_format: str = "auto",
    max_failed_share: float = 0.02,
    context_length: int = 0,
    revision: str = "",
):
    """Filter the generation shards (dsl.Collected) with `profile`; parameters: README.md here."""
    from labpipe.critique.stage import CritiqueConfig, run_critique
    from labpipe.llm.options import ClientOptions
    from labpipe.taskio import finish, start

    start()  # a UserError prints its problems, no traceback
    meta = run_critique(
        CritiqueConfig(
            generated=[g.path for g in generated],
            out="",  # a temporary directory, removed when done (the sets go to the artifact paths)
            judge=ClientOptions(endpoint=judge, model=judge_model, secret=judge_secret, timeout_s=float(timeout_s),
                                max_retries=int(max_retries), schema_retries=int(schema_retries),
                                response_format=response_format,
                                context_length=int(context_length), revision=revision),
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
    finish("critique_filter", meta, run_id=run_id, tracking_uri=tracking_uri, inputs={"generated": list(generated)},
           outputs={"knowledge_set": knowledge_set, "skills_set": skills_set, "report": report})
