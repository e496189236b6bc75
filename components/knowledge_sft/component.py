"""The knowledge SFT task: the `sft` component with phase "knowledge", from a base model path or s3:// URI."""

from kfp import dsl
from labpipe.components.sft.component import sft


def knowledge_sft(
    *, base_model: str, data, preset: str, max_steps: int, run_id: str, tracking_uri: str, **scale
) -> dsl.PipelineTask:
    """Add a knowledge-SFT task to the pipeline being defined; set GPUs / tolerations on the returned task."""
    task = sft(
        phase="knowledge",
        base_model=base_model,
        data=data,
        preset=preset,
        max_steps=max_steps,
        run_id=run_id,
        tracking_uri=tracking_uri,
        **scale,  # gpus, training_nodes, training_backend, training_runtime, checkpoint_root, ... (sft component)
    )
    task.set_display_name("knowledge-sft")
    return task
