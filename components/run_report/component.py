"""KFP component: the run's report page (one self-contained HTML file) as a KFP HTML artifact and in MLflow."""

from kfp import dsl
from kfp.dsl import HTML, Output
from labpipe.components.images import image_for


@dsl.component(base_image=image_for("evaluation"))
def run_report(run_id: str, tracking_uri: str, report: Output[HTML]):
    """Render what the pipeline run recorded in MLflow so far (stages, funnel, losses, scores, gate, lineage)."""
    from labpipe.errors import clean_user_errors

    clean_user_errors()  # a UserError prints its problems, no traceback
    from labpipe.runs.report import write_pipeline_report

    report.metadata.update(write_pipeline_report(report.path, pipeline_run_id=run_id, tracking_uri=tracking_uri))
