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
    generation_cache: str = "",
):
    """Run each leaf's flow on the teacher; empty teacher/teacher_model fall back to TEACHER_* env vars.

    teacher_secret names the Kubernetes secret mounted as TEACHER_ENDPOINT / TEACHER_MODEL /
    TEACHER_API_KEY (by the pipeline, with kfp-kubernetes); the key never passes through a parameter.
    gate=False records the in-flow judge scores without dropping (the offline smoke run).
    generation_cache: shared reply cache (an s3:// prefix on a cluster; "" = local, lost with the pod).
    """
    from labpipe.generation.stage import GenerationConfig, run_generation

    meta = run_generation(
        GenerationConfig(
            seeds=seeds.path,
            out=generated.path,
            teacher=teacher,
            teacher_model=teacher_model,
            secret=teacher_secret,
            concurrency=concurrency,
            gate=gate,
            generation_cache=generation_cache,
            progress=False,
            run_id=run_id,
            tracking_uri=tracking_uri,
        )
    )
    generated.metadata.update(meta)
    from labpipe.lineage import record

    record(
        "synthetic_generation",
        meta,
        pipeline_run_id=run_id,
        tracking_uri=tracking_uri,
        inputs={"seeds": seeds.uri},
        outputs={"generated": generated.uri},
    )
