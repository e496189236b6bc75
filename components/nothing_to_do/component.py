"""KFP component: the `dsl.Else` branch of the weekly run, when nothing changed since production."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output
from labpipe.components.images import image_for


@dsl.component(base_image=image_for("taxonomy"))
def nothing_to_do(diff: Input[Dataset], run_id: str, tracking_uri: str, report: Output[Markdown]):
    """A short report: which production version and which taxonomy commit made training unnecessary."""
    from labpipe.registry.production import nothing_to_do_report
    from labpipe.runs.lineage import record

    meta = nothing_to_do_report(diff.path, report.path)
    report.metadata.update(meta)
    record("nothing_to_do", meta, pipeline_run_id=run_id, tracking_uri=tracking_uri, inputs={"diff": diff.uri},
           outputs={"report": report.uri})
