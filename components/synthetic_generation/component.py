"""KFP component: synthetic training examples from the seed records, written by the teacher model."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output
from labpipe.components.images import image_for


@dsl.component(base_image=image_for("generation"))
def synthetic_generation(
    seeds: Input[Dataset],
    teacher: str,
    teacher_model: str,
    teacher_secret: str,
    concurrency: int,
    run_id: str,
    tracking_uri: str,
    generated: Output[Dataset],
    gate: bool = True,
    shard_plan: Input[Dataset] = None,
    shard: int = 0,
    timeout_s: float = 120.0,
    max_retries: int = 6,
    generation_cache: str = "",
    response_format: str = "auto",
    max_failed_share: float = 0.02,
    context_length: int = 0,
    revision: str = "",
):
    """Run each leaf's flow on the teacher; empty teacher/teacher_model fall back to TEACHER_* env vars.

    teacher_secret names the Kubernetes secret mounted as TEACHER_ENDPOINT / TEACHER_MODEL /
    TEACHER_API_KEY (by the pipeline, with kfp-kubernetes); the key never passes through a parameter.
    gate=False records the in-flow judge scores without dropping (the offline smoke run).
    shard_plan/shard (the pipeline's fan-out): generate only that shard of the seed records.
    generation_cache: shared reply cache (an s3:// prefix on a cluster; "" = local, lost with the pod).
    max_failed_share: teacher requests that may fail for good (reported) before the task fails.
    """
    from labpipe.errors import clean_user_errors

    clean_user_errors()  # a UserError prints its problems, no traceback
    from labpipe.generation.stage import GenerationConfig, run_generation
    from labpipe.llm.options import ClientOptions

    meta = run_generation(
        GenerationConfig(
            seeds=seeds.path,
            out=generated.path,
            teacher=ClientOptions(
                endpoint=teacher,
                model=teacher_model,
                concurrency=concurrency,
                secret=teacher_secret,
                timeout_s=float(timeout_s),
                max_retries=int(max_retries),
                response_format=response_format,
                context_length=int(context_length),
                revision=revision,
            ),
            gate=gate,
            shard_plan=shard_plan.path if shard_plan is not None else "",
            shard=int(shard),
            generation_cache=generation_cache,
            max_failed_share=float(max_failed_share),
            progress=False,
            run_id=run_id,
            tracking_uri=tracking_uri,
        )
    )
    generated.metadata.update(meta)
    from labpipe.runs.lineage import record

    record(
        "synthetic_generation",
        meta,
        pipeline_run_id=run_id,
        tracking_uri=tracking_uri,
        inputs={"seeds": seeds.uri, **({"shard_plan": shard_plan.uri} if shard_plan is not None else {})},
        outputs={"generated": generated.uri},
    )
