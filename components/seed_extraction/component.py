"""KFP component: seed records (JSONL) from the changed leaves, with knowledge documents chunked."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output
from labpipe.components.images import image_for


@dsl.component(base_image=image_for("taxonomy"))
def seed_extraction(
    diff: Input[Dataset],
    tokenizer: str,
    chunk_tokens: int,
    run_id: str,
    tracking_uri: str,
    seeds: Output[Dataset],
    shard_plan: Output[Dataset],
    shards: int = 1,
) -> list:
    """One seed record per changed leaf; `tokenizer` (model dir / s3:// URI, or "") budgets the chunks.

    Also plans the generation fan-out: `shard_plan` splits the records into at most `shards` parts of
    about equal planned requests; returns the shard indices the pipeline's ParallelFor runs over."""
    from labpipe.errors import clean_user_errors

    clean_user_errors()  # a UserError prints its problems, no traceback
    from labpipe.taxonomy.stage import SeedExtractionConfig, run_seed_extraction

    meta = run_seed_extraction(
        SeedExtractionConfig(
            diff=diff.path,
            out=seeds.path,
            tokenizer=tokenizer,
            chunk_tokens=int(chunk_tokens),
            shards=int(shards),
            shard_plan_out=shard_plan.path,
            run_id=run_id,
            tracking_uri=tracking_uri,
        )
    )
    seeds.metadata.update(meta)
    from labpipe.runs.lineage import record

    record(
        "seed_extraction",
        meta,
        pipeline_run_id=run_id,
        tracking_uri=tracking_uri,
        inputs={"diff": diff.uri, "tokenizer": tokenizer},
        outputs={"seeds": seeds.uri, "shard_plan": shard_plan.uri},
    )
    return list(range(int(meta["shards"])))
