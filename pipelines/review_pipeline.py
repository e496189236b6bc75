"""The review pipeline: `labpipe review` as one KFP task, so that curators review a contribution on the
cluster with the weekly run's secrets (teacher, judge, S3, git, MLflow) and its shared generation cache:
the sample's teacher and judge replies land there, and the next weekly run does not pay for them again.

Upload the YAML that `labpipe review --compile review_pipeline.yaml` writes (or compile this module), and
run it with the contribution's ref. The task's outputs: the verdict (pass | warn | fail, its return value),
`page` (the HTML page, shown by the KFP UI), `summary` (Markdown for the pull request) and `result`
(review.json/.md/.html). docs/review.md has the curator's workflow.
"""

from kfp import dsl
from labpipe.components.review.component import review
from labpipe.pipelines.lab_pipeline import (
    RUN_ID,
    _resources,
    _with_cluster_config,
    _with_endpoint,
    _with_git,
    _with_s3,
)


@dsl.pipeline(
    name="lab-review",
    description="Review a taxonomy contribution before it is merged: a verdict per "
    "changed leaf (validation, overlap, sample yield, known, cost)",
)
def review_pipeline(
    taxonomy: str,
    ref: str,
    base: str = "production",
    base_model: str = "",
    teacher: str = "",
    teacher_model: str = "",
    teacher_secret: str = "labpipe-teacher",
    judge: str = "",
    judge_model: str = "",
    judge_secret: str = "labpipe-judge",
    s3_secret: str = "labpipe-s3",
    taxonomy_secret: str = "labpipe-taxonomy-git",
    sample_size: int = 2,
    generation_gate: bool = True,
    critique_profile: str = "lab",
    chunk_tokens: int = 1000,
    seed: int = 42,
    generation_cache: str = "",
    response_format: str = "auto",
    questions: str = "",
    known_threshold: float = 8.0,
    known_model: str = "",  # the production model's endpoint (…/v1); "" = the registry's model, in the task
    known_model_name: str = "",
    production_model_name: str = "labpipe-model",
    mlflow_tracking_uri: str = "",
    cpu_request: str = "2",
    cpu_limit: str = "4",
    memory_request: str = "4Gi",
    memory_limit: str = "8Gi",
):
    task = review(
        taxonomy=taxonomy,
        ref=ref,
        base=base,
        base_model=base_model,
        teacher=teacher,
        teacher_model=teacher_model,
        judge=judge,
        judge_model=judge_model,
        sample_size=sample_size,
        generation_gate=generation_gate,
        critique_profile=critique_profile,
        chunk_tokens=chunk_tokens,
        seed=seed,
        generation_cache=generation_cache,
        response_format=response_format,
        questions=questions,
        known_threshold=known_threshold,
        known_model=known_model,
        known_model_name=known_model_name,
        production_model_name=production_model_name,
        run_id=RUN_ID,
        tracking_uri=mlflow_tracking_uri,
    ).set_display_name("review")
    _with_git(
        _with_endpoint(
            _with_endpoint(_with_s3(task, s3_secret), "teacher", teacher_secret), "judge", judge_secret
        ),
        taxonomy_secret,
    )
    # never KFP-cached: it reads external state (git, the registry, endpoints); the generation cache does the reuse
    task.set_caching_options(False)
    _resources(_with_cluster_config(task), cpu_request, cpu_limit, memory_request, memory_limit)


def compile_review_pipeline(out: str) -> str:
    from kfp import compiler

    compiler.Compiler().compile(review_pipeline, package_path=str(out))
    return str(out)
