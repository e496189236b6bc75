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
):
    """Train `phase` (knowledge | skills) from `base` (a previous phase's Model) if given, else `base_model`.

    base_model is a local path or s3:// URI; max_steps <= 0 keeps the preset's epochs. model.path is the
    training output directory: model/ (the HF model), checkpoints/checkpoint-<step>/, training_summary.json.
    """
    from labpipe.errors import clean_user_errors

    clean_user_errors()  # a UserError prints its problems, no traceback
    from labpipe.training.config import TrainingConfig
    from labpipe.training.passthrough import skip_empty_knowledge_phase
    from labpipe.training.stage import run_training

    config = TrainingConfig(
        phase=phase,
        base_model=base.path if base is not None else base_model,
        data=data.path,
        out=model.path,
        preset=preset,
        overrides={"max_steps": max_steps} if max_steps > 0 else {},
        run_id=run_id,
        tracking_uri=tracking_uri,
    )
    meta = skip_empty_knowledge_phase(config) or run_training(config)  # skills-only change: no knowledge
    model.metadata.update(meta)
    from labpipe.lineage import record

    record(
        "knowledge_sft" if phase == "knowledge" else "skill_sft",
        meta,
        pipeline_run_id=run_id,
        tracking_uri=tracking_uri,
        inputs={"base": base.uri if base is not None else base_model, "data": data.uri},
        outputs={"model": model.uri},
    )
