"""KFP component: the leaves of a taxonomy that changed against a base ref, validated and copied out."""

from kfp import dsl
from kfp.dsl import Dataset, Output
from labpipe.components.images import image_for


@dsl.component(base_image=image_for("taxonomy"))
def taxonomy_diff(
    taxonomy: str, taxonomy_ref: str, base: str, run_id: str, tracking_uri: str, diff: Output[Dataset]
):
    """Diff `taxonomy` (dir or git URL, at `taxonomy_ref`) against `base` ("empty": every leaf); validate."""
    from labpipe.errors import clean_user_errors

    clean_user_errors()  # a UserError prints its problems, no traceback
    from labpipe.taxonomy.stage import TaxonomyDiffConfig, run_taxonomy_diff

    meta = run_taxonomy_diff(
        TaxonomyDiffConfig(
            taxonomy=taxonomy,
            taxonomy_ref=taxonomy_ref,
            base=base,
            out=diff.path,
            run_id=run_id,
            tracking_uri=tracking_uri,
        )
    )
    diff.metadata.update(meta)
    from labpipe.lineage import record

    record(
        "taxonomy_diff",
        meta,
        pipeline_run_id=run_id,
        tracking_uri=tracking_uri,
        inputs={"taxonomy": taxonomy, "taxonomy_ref": taxonomy_ref, "base": base},
        outputs={"diff": diff.uri},
    )
