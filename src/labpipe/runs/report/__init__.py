"""One self-contained HTML page per pipeline run, built from what the run recorded in MLflow.

`collect(tracking_uri, pipeline_run_id=... | run_id=...)` gathers the stage runs (status, times, metrics),
the critique yield report (data funnel per leaf), the training loss histories, MT-Bench scores, the gate
decision and the lineage tags; `render_html(data)` turns them into one HTML file with inline CSS and SVG
(no script, no network), readable at 1280 px and printable; `write_report` does both and writes the
file atomically (local path or s3://). `labpipe report RUN --out report.html` is the CLI.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labpipe.runs import lineage as lineage_mod
from labpipe.runs import tracking
from labpipe.runs.report.html import render_html

__all__ = ["RunData", "collect", "render_html", "write_report"]

@dataclass
class StageRecord:
    name: str
    status: str
    start_ms: int | None
    end_ms: int | None
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str = ""
    failures: dict[str, Any] = field(default_factory=dict)  # requests failed for good (tag labpipe.failures)
    error: str = ""  # why a FAILED stage failed (tag labpipe.error)

    @property
    def seconds(self) -> float | None:
        if self.start_ms and self.end_ms:
            return (self.end_ms - self.start_ms) / 1000
        return None


@dataclass
class RunData:
    pipeline_run_id: str
    mlflow_run_id: str
    status: str
    tracking_uri: str
    start_ms: int | None = None
    end_ms: int | None = None
    stages: list[StageRecord] = field(default_factory=list)
    yield_report: dict[str, Any] = field(default_factory=dict)
    losses: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # phase -> [(step, loss)]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> {overall, turn1, category.x}
    decision: dict[str, Any] = field(default_factory=dict)
    branch: dict[str, Any] = field(default_factory=dict)
    lineage: lineage_mod.Lineage | None = None
    published: dict[str, str] = field(default_factory=dict)
    tasks: list[dict[str, Any]] = field(default_factory=list)  # pipeline tasks as `labpipe run` saw them


def _download_json(client, run_id: str, path: str) -> Any:
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = client.download_artifacts(run_id, path, tmp)
            return json.loads(Path(local).read_text())
    except Exception:  # an artifact a stage did not write (older run, failed stage): the page says so
        return None


def collect(tracking_uri: str, *, pipeline_run_id: str = "", run_id: str = "") -> RunData:
    """Everything the page shows, from MLflow (raises UserError when the run is not found)."""
    import os

    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    info = lineage_mod.describe(tracking_uri, pipeline_run_id=pipeline_run_id, run_id=run_id)
    client = MlflowClient(tracking_uri=tracking_uri)
    parent = client.get_run(info.mlflow_run_id)
    data = RunData(info.pipeline_run_id, info.mlflow_run_id, info.status, tracking_uri,
                   parent.info.start_time, parent.info.end_time, lineage=info)
    for key, value in parent.data.tags.items():  # written by `labpipe run` (kfp.local) at the end
        if key.startswith("labpipe.task."):
            data.tasks.append({"task": key.removeprefix("labpipe.task."), **json.loads(value)})
    data.tasks.sort(key=lambda t: (t.get("start_ms") or float("inf"), t.get("label", "")))
    runs = client.search_runs([parent.info.experiment_id],  # labpipe's experiment, or DSP's
                              filter_string=f"tags.`{tracking.PIPELINE_RUN_TAG}` = '{info.pipeline_run_id}' "
                                            f"and tags.`{tracking.ROLE_TAG}` = 'stage'",
                              order_by=["attributes.start_time ASC"], max_results=500)
    for run in runs:
        name = run.data.tags.get("labpipe.stage", run.info.run_name)
        try:
            failures = json.loads(run.data.tags.get("labpipe.failures") or "{}")
        except ValueError:
            failures = {}
        data.stages.append(StageRecord(name, run.info.status, run.info.start_time, run.info.end_time,
                                       dict(run.data.metrics), run.info.run_id, failures,
                                       run.data.tags.get("labpipe.error", "")))
        if name == "critique_filter":
            data.yield_report = _download_json(client, run.info.run_id, "yield_report.json") or {}
        elif name.endswith("_sft") and "loss" in run.data.metrics:
            history = client.get_metric_history(run.info.run_id, "loss")
            data.losses[name.removesuffix("_sft")] = sorted((m.step, m.value) for m in history)
        elif name == "mt_bench_eval":
            for key, value in run.data.metrics.items():
                parts = key.split(".")
                if len(parts) >= 3 and parts[0] == "mt_bench":
                    data.scores.setdefault(parts[1], {})[".".join(parts[2:])] = value
        elif name == "quality_gate":
            data.decision = _download_json(client, run.info.run_id, "gate/decision") or {}
        elif name.startswith("branch"):
            data.branch = _download_json(client, run.info.run_id, "branch.json") or {}
    if not data.decision and "mt_bench_eval" in info.stages:  # the decision as recorded in the lineage
        meta = info.stages["mt_bench_eval"]
        if "metadata.publish" in meta:
            data.decision = {"publish": meta["metadata.publish"] == "True",
                             "reasons": json.loads(meta.get("metadata.reasons", "[]"))}
    if data.decision.get("production") is not None:
        data.scores.setdefault("production", {})["overall"] = float(data.decision["production"])
    pub = info.stages.get("publish_model", {})
    if pub:
        data.published = {"name": pub.get("metadata.registered_model", ""), "version": pub.get("metadata.version", ""),
                          "alias": pub.get("metadata.alias", "")}
    return data


def write_report(tracking_uri: str, out: str, *, pipeline_run_id: str = "", run_id: str = "",
                 log_to_mlflow: bool = False) -> RunData:
    """Collect, render and write the page to `out` (path or s3://); optionally attach it to the MLflow run."""
    from labpipe import storage

    data = collect(tracking_uri, pipeline_run_id=pipeline_run_id, run_id=run_id)
    html = render_html(data)
    storage.write_text(out, html)
    if log_to_mlflow:
        from mlflow.tracking import MlflowClient

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "report.html"
            local.write_text(html, encoding="utf-8")
            MlflowClient(tracking_uri=tracking_uri).log_artifact(data.mlflow_run_id, str(local))
    return data


def write_pipeline_report(out: str, *, pipeline_run_id: str, tracking_uri: str = "") -> dict[str, Any]:
    """The pipeline's own report task: the page, attached to the MLflow run; returns the artifact metadata.

    Without a tracking URI (argument or MLFLOW_TRACKING_URI) nothing was recorded to report on: the page
    says so instead of failing the run at its very end.
    """
    import os

    from labpipe import storage

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        storage.write_text(out, render_html(RunData(pipeline_run_id, "", "no tracking", "")))
        return {"pipeline_run_id": pipeline_run_id, "tracking": False}
    data = write_report(uri, out, pipeline_run_id=pipeline_run_id, log_to_mlflow=True)
    scores = {f"{m}.overall": s["overall"] for m, s in data.scores.items() if "overall" in s}
    return {"pipeline_run_id": pipeline_run_id, "mlflow_run_id": data.mlflow_run_id,
            "publish": data.decision.get("publish"), **scores}

