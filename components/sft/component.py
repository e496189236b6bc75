"""KFP component: one SFT phase on trl (the one implementation behind knowledge_sft and skill_sft)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output
from labpipe.components.images import image_for


@dsl.component(base_image=image_for("training"))
def sft(
    phase: str,
    base_model: str,
    data: Input[Dataset],
    preset: str,
    max_steps: int,
    run_id: str,
    tracking_uri: str,
    model: Output[Model],
    base: Input[Model] = None,
    gpus: int = 1,
    training_nodes: int = 1,
    training_backend: str = "pod",
    training_runtime: str = "torch-distributed",
    checkpoint_root: str = "",
    workspace: str = "",
    node_selector: dict = {},  # noqa: B006 - KFP defaults are literals
    tolerations: list = [],  # noqa: B006
    s3_secret: str = "",
    ca_bundle: str = "",
    trusted_ca: str = "",
    training_image: str = "",
    queue_name: str = "",
    deadline_minutes: float = 0.0,
):
    """Train `phase` (knowledge | skills) from `base` (a previous phase's Model) if given, else `base_model`.

    model.path: model/ and training_summary.json. Job mode (README.md): a Kubeflow Trainer job on training_nodes x
    gpus in `training_image`, an input pinned at compile time (never this image's own lock file).
    """
    from labpipe.errors import clean_user_errors

    clean_user_errors()  # a UserError prints its problems, no traceback
    from labpipe.runs.lineage import record
    from labpipe.training.task import SftTaskConfig, run_sft_task

    meta = run_sft_task(SftTaskConfig(
        phase=phase, base_model=base.path if base is not None else base_model, data=data.path, out=model.path,
        preset=preset, max_steps=max_steps, run_id=run_id, tracking_uri=tracking_uri, gpus=gpus,
        training_nodes=training_nodes, training_backend=training_backend, training_runtime=training_runtime,
        checkpoint_root=checkpoint_root, workspace=workspace, image=training_image, node_selector=node_selector,
        tolerations=tolerations, s3_secret=s3_secret, ca_bundle=ca_bundle, trusted_ca=trusted_ca,
        queue_name=queue_name, deadline_minutes=deadline_minutes,
    ))  # fmt: skip
    model.metadata.update(meta)
    record("knowledge_sft" if phase == "knowledge" else "skill_sft", meta, pipeline_run_id=run_id,
           tracking_uri=tracking_uri, inputs={"base": base.uri if base is not None else base_model, "data": data.uri},
           outputs={"model": model.uri})  # fmt: skip
