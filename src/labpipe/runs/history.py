"""Recent pipeline runs (`labpipe runs`): one summary row per run, from its MLflow tags (the lineage records)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labpipe.runs import stages, tracking
from labpipe.runs.lineage import LINEAGE_PREFIX, _int

RUN_COLUMNS = [
    "pipeline_run_id",
    "name",
    "status",
    "started",
    "taxonomy_commit",
    "leaves_changed",
    "requests_sent",
    "requests_reused",
    "gate",
    "published_version",
]


def run_summary(tags: Mapping[str, str]) -> dict[str, Any]:
    """One row of `labpipe runs` from a pipeline run's MLflow tags (the lineage.<stage>.* records)."""

    def get(stage: str, key: str) -> str:
        return tags.get(f"{LINEAGE_PREFIX}{stages.canonical(stage)}.{key}", "")

    publish = get("mt_bench_eval", "metadata.publish")
    return {
        "taxonomy_commit": get("taxonomy_diff", "metadata.taxonomy_commit")[:12],
        "leaves_changed": _int(
            get("taxonomy_diff", "metadata.leaves_changed") or get("taxonomy_diff", "metadata.leaves")
        )
        if get("taxonomy_diff", "metadata.leaves")
        else "",
        "requests_sent": _int(get("synthetic_generation", "metadata.requests_sent"))
        if get("synthetic_generation", "metadata.requests_sent")
        else "",
        "requests_reused": _int(get("synthetic_generation", "metadata.requests_cached"))
        if get("synthetic_generation", "metadata.requests_cached")
        else "",
        "gate": {"True": "publish", "False": "rejected"}.get(publish, ""),
        "published_version": get("publish_model", "metadata.version"),
        "failed_stages": tags.get("labpipe.failed_stages", ""),
    }


def recent_runs(
    tracking_uri: str, limit: int = 10, experiment: str = tracking.DEFAULT_EXPERIMENT
) -> list[dict[str, Any]]:
    """The newest `limit` pipeline runs recorded in MLflow, newest first, as run_summary rows."""
    import time

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{tracking.ROLE_TAG}` = 'pipeline'",
        order_by=["attributes.start_time DESC"],
        max_results=limit,
    )
    rows = []
    for run in runs:
        status = run.info.status
        failed = run.data.tags.get("labpipe.failed_stages", "")
        rows.append(
            {
                "pipeline_run_id": run.data.tags.get(tracking.PIPELINE_RUN_TAG, ""),
                "name": run.data.tags.get("labpipe.pipeline_run_name", run.info.run_name or ""),
                "status": f"{status} ({failed})" if failed else status,
                "started": time.strftime("%Y-%m-%d %H:%M", time.gmtime((run.info.start_time or 0) / 1000)),
                **run_summary(run.data.tags),
            }
        )
    return rows


def pipeline_run_tags(
    tracking_uri: str, pipeline_run_id: str, experiment: str = tracking.DEFAULT_EXPERIMENT
) -> dict[str, str]:
    """The MLflow tags of pipeline run `pipeline_run_id` ({} when MLflow has no record of it)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    found = client.search_runs(
        [exp.experiment_id],
        max_results=1,
        filter_string=f"tags.`{tracking.PIPELINE_RUN_TAG}` = '{pipeline_run_id}' and tags.`{tracking.ROLE_TAG}` = "
        "'pipeline'",
    )
    return dict(found[0].data.tags) if found else {}


def format_runs(rows: list[dict[str, Any]]) -> str:
    """A plain table (one line per run) of RUN_COLUMNS; empty cells are '-'."""
    if not rows:
        return "no pipeline runs found"
    headers = ["run", "name", "status", "started", "commit", "leaves", "sent", "reused", "gate", "version"]
    table = [[str(row.get(c, "")) or "-" for c in RUN_COLUMNS] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(headers)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [headers, *table]
    )
