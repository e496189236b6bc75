"""KFP component: close the pipeline's MLflow parent run with the pipeline's real outcome (the exit task)."""

from kfp import dsl
from labpipe.components.images import image_for


@dsl.component(base_image=image_for("evaluation"))
def finalize_run(run_id: str, tracking_uri: str, status: dsl.PipelineTaskFinalStatus) -> str:
    """Close the MLflow parent run of pipeline run `run_id`: FINISHED, or FAILED naming the failing stage.

    Runs as the task of `dsl.ExitHandler`, so it runs whether the pipeline succeeded or failed; `status`
    is filled in by KFP. An empty tracking_uri falls back to MLFLOW_TRACKING_URI (the labpipe-mlflow secret).
    Returns the MLflow status it set ("" when tracking is off).
    """
    from labpipe.errors import clean_user_errors

    clean_user_errors()  # an unreachable MLflow: one line, no traceback
    from labpipe.runs.tracking_check import finalize_pipeline_run

    closed = finalize_pipeline_run(
        run_id,
        tracking_uri,
        {"state": status.state, "error_message": status.error_message, "pipeline_task_name": status.pipeline_task_name},
    )
    return closed.get("status", "")
