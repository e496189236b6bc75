"""The skill SFT task: the `sft` component with phase "skills", from the knowledge phase's Model artifact."""

from kfp import dsl
from labpipe.components.sft.component import sft


def skill_sft(
    *, knowledge_model, data, preset: str, max_steps: int, run_id: str, tracking_uri: str, **scale
) -> dsl.PipelineTask:
    """Add a skill-SFT task fed by the knowledge task's `model` output; set GPUs / tolerations on the returned task."""
    task = sft(
        phase="skills",
        base_model="",
        base=knowledge_model,
        data=data,
        preset=preset,
        max_steps=max_steps,
        run_id=run_id,
        tracking_uri=tracking_uri,
        **scale,  # gpus, training_nodes, training_backend, training_runtime, checkpoint_root, ... (sft component)
    )
    task.set_display_name("skill-sft")
    return task
