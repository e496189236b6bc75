"""KFP component: register the candidate in MLflow and alias it `production` (runs under dsl.If)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model
from labpipe.components.images import image_for


@dsl.component(base_image=image_for("evaluation"))
def publish_model(
    candidate: Input[Model],
    decision: Input[Artifact],
    production_model_name: str,
    run_id: str,
    tracking_uri: str,
    diff: Input[Dataset] = None,
) -> str:
    """Register the candidate as a new version of `production_model_name`; return the version."""
    from labpipe.evaluation.candidate import published_model_dir
    from labpipe.evaluation.publish import publish_model as publish
    from labpipe.lineage import record

    version = publish(
        published_model_dir(candidate.path, decision.path),  # the checkpoint the gate approved
        decision.path,
        production_model_name,
        run_id=run_id,
        tracking_uri=tracking_uri,
        taxonomy_diff=diff.path if diff is not None else "",  # taxonomy commit + fingerprint for the next run
    )
    record(
        "publish_model",
        {"registered_model": production_model_name, "version": version, "alias": "production"},
        pipeline_run_id=run_id,
        tracking_uri=tracking_uri,
        inputs={"candidate": candidate.uri},
    )
    return version
