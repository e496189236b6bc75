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
    schema_retries: int = 2,
    generation_cache: str = "",
    response_format: str = "auto",
    max_failed_share: float = 0.02,
    context_length: int = 0,
    revision: str = "",
):
    """Run each leaf's flow on the teacher (empty teacher: TEACHER_* env vars); parameters: README.md here."""
    from labpipe.generation.stage import GenerationConfig, run_generation
    from labpipe.llm.options import ClientOptions
    from labpipe.taskio import finish, start

    start()  # a UserError prints its problems, no traceback
    meta = run_generation(
        GenerationConfig(
            seeds=seeds.path,
            out=generated.path,
            teacher=ClientOptions(endpoint=teacher, model=teacher_model, concurrency=concurrency,
                                  secret=teacher_secret, timeout_s=float(timeout_s), max_retries=int(max_retries),
                                  schema_retries=int(schema_retries),
                                  response_format=response_format, context_length=int(context_length),
                                  revision=revision),
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
    finish("synthetic_generation", meta, run_id=run_id, tracking_uri=tracking_uri,
           inputs={"seeds": seeds, "shard_plan": shard_plan}, outputs={"generated": generated})
