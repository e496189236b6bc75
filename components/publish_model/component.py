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
    pipeline_run_name: str = "",
    model_registry: str = "",
    diff: Input[Dataset] = None,
    serve: str = "",
) -> str:
    """Register the approved checkpoint as a new version of `production_model_name`; return the version.

    Its source is the artifact's own URI (s3:// on a cluster: no second copy); model_registry (a URL, "" =
    off) also registers it in the Kubeflow Model Registry with the same provenance. serve (an InferenceService
    name, "" = off) hands it to KServe (vLLM runtime) and fails the task unless it is Ready and answers a chat.
    """
    from labpipe.errors import clean_user_errors

    clean_user_errors()  # a UserError prints its problems, no traceback
    from labpipe.evaluation.candidate import published_model_dir
    from labpipe.registry.publish import publish_model as publish
    from labpipe.runs.lineage import record
    from labpipe.storage import join

    approved = published_model_dir(candidate.path, decision.path)  # the checkpoint the gate approved
    sub = approved[len(candidate.path):].strip("/")
    source = join(candidate.uri, sub) if sub else candidate.uri
    version = publish(
        approved, decision.path, production_model_name, run_id=run_id, tracking_uri=tracking_uri,
        source_uri=source, pipeline_run_name=pipeline_run_name,
        model_registry=model_registry,
        taxonomy_diff=diff.path if diff is not None else "",  # taxonomy commit + fingerprint for the next run
    )
    record(
        "publish_model",
        {"registered_model": production_model_name, "version": version, "alias": "production"},
        pipeline_run_id=run_id,
        tracking_uri=tracking_uri,
        inputs={"candidate": candidate.uri},
    )
    if serve:  # after the registry: the version exists whether or not it serves
        from labpipe.evaluation.serving import ServeConfig, serve_and_record

        serve_and_record(ServeConfig(name=serve, storage_uri=source), run_id=run_id, tracking_uri=tracking_uri,
                         registered=f"{production_model_name}/{version}")
    return version
