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
    from_config,
)

from labpipe.runconfig import ReviewConfig


@dsl.pipeline(
    name="lab-review",
    description="Review a taxonomy contribution before it is merged: a verdict per "
    "changed leaf (validation, overlap, sample yield, known, cost)",
)
@from_config(ReviewConfig)  # the parameters: labpipe.runconfig.ReviewConfig
def review_pipeline(cfg: ReviewConfig):
    task = review(
        taxonomy=cfg.taxonomy,
        ref=cfg.ref,
        base=cfg.base,
        base_model=cfg.base_model,
        teacher=cfg.teacher,
        teacher_model=cfg.teacher_model,
        judge=cfg.judge,
        judge_model=cfg.judge_model,
        sample_size=cfg.sample_size,
        generation_gate=cfg.generation_gate,
        critique_profile=cfg.critique_profile,
        chunk_tokens=cfg.chunk_tokens,
        seed=cfg.seed,
        generation_cache=cfg.generation_cache,
        response_format=cfg.response_format,
        questions=cfg.questions,
        known_threshold=cfg.known_threshold,
        known_model=cfg.known_model,
        known_model_name=cfg.known_model_name,
        production_model_name=cfg.production_model_name,
        run_id=RUN_ID,
        tracking_uri=cfg.mlflow_tracking_uri,
    ).set_display_name("review")
    _with_git(
        _with_endpoint(
            _with_endpoint(_with_s3(task, cfg.s3_secret), "teacher", cfg.teacher_secret),
            "judge",
            cfg.judge_secret,
        ),
        cfg.taxonomy_secret,
    )
    # never KFP-cached: it reads external state (git, the registry, endpoints); the generation cache does the reuse
    task.set_caching_options(False)
    _resources(
        _with_cluster_config(task), cfg.cpu_request, cfg.cpu_limit, cfg.memory_request, cfg.memory_limit
    )


def compile_review_pipeline(out: str) -> str:
    from kfp import compiler

    compiler.Compiler().compile(review_pipeline, package_path=str(out))
    return str(out)
