"""Datasets in MLflow: what each stage read and wrote, with content digests, on the stage's nested run.

MLflow 3 records datasets as run inputs only (log_outputs takes logged models). A dataset a stage writes is
therefore logged on the stage's run with the context tag `output`; the next stage logs the same dataset
(same digest) as its input, which links the two runs in MLflow's UI and API.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from labpipe.runs.stages import canonical as canonical_stage
from labpipe.runs.tracking import (
    DEFAULT_EXPERIMENT,
    PIPELINE_RUN_TAG,
    ROLE_TAG,
    STAGE_TAG,
    mlflow_client,
    pipeline_context,
    stage_run,
)

DATASET_CONTEXT_TAG = "mlflow.data.context"
KFP_LOCAL_MOUNTS = {"s3://": "/s3/", "gs://": "/gcs/", "minio://": "/minio/"}  # KFP launcher's local views


@dataclass
class DatasetRef:
    """A dataset a stage read or wrote: its name, where it lives, and a content digest (sha256)."""

    name: str
    uri: str
    digest: str = ""
    context: str = "input"  # input | output | training | evaluation
    local_path: str = ""  # where this process can read it (a KFP artifact's .path), when not `uri`
    source_type: str = ""  # "" = from the URI (s3 | local); "git" for a taxonomy repository at a commit

    def to_entity(self):
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        digest = self.digest or dataset_digest(self.local_path or self.uri) or "unknown"
        source_type = self.source_type or ("s3" if self.uri.startswith("s3://") else "local")
        dataset = Dataset(
            name=self.name,
            digest=digest[:32],  # MLflow's digest column holds 36 characters; the full one is in the profile
            source_type=source_type,
            source=json.dumps({"uri": self.uri}),
            profile=json.dumps({"sha256": digest}),
        )
        return DatasetInput(dataset, tags=[InputTag(DATASET_CONTEXT_TAG, self.context)])


def local_view(uri: str) -> Path | None:
    """A path this process can read `uri` at: itself when local, else KFP's mount of a remote artifact."""
    if not uri:
        return None
    for scheme, mount in KFP_LOCAL_MOUNTS.items():
        if uri.startswith(scheme):
            path = Path(mount + uri[len(scheme) :])
            return path if path.exists() else None
    path = Path(uri)
    return path if path.exists() else None


def dataset_digest(location: str | Path) -> str:
    """sha256 of a file; of a directory, over its files' relative paths and sha256s; "" when unreadable.

    An s3:// object uploaded by labpipe.storage carries its sha256 as metadata (read, not downloaded).
    """
    import hashlib

    from labpipe import storage

    text = str(location)
    path = local_view(text) if "://" in text else Path(text)
    if path is None:
        if storage.is_s3(text):
            try:
                bucket, key = storage.split_s3(text)
                head = storage.s3_client().head_object(Bucket=bucket, Key=key)
                return head.get("Metadata", {}).get(storage.SHA256_META, "")
            except Exception:  # a prefix, or unreachable: the digest stays unknown, never invented
                return ""
        return ""
    if path.is_file():
        return storage.sha256_file(path)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{f.relative_to(path).as_posix()}\0{storage.sha256_file(f)}\n".encode())
        return h.hexdigest()
    return ""


def latest_stage_run(client, experiment_id: str, pipeline_run_id: str, stage: str):
    """The newest nested run of `stage` in pipeline run `pipeline_run_id` (a retried task made several)."""
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{PIPELINE_RUN_TAG}` = '{pipeline_run_id}' and tags.`{ROLE_TAG}` = 'stage' "
        f"and tags.`{STAGE_TAG}` = '{canonical_stage(stage)}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0] if found else None


def log_datasets(
    stage: str,
    datasets: list[DatasetRef],
    *,
    pipeline_run_id: str,
    tracking_uri: str = "",
    experiment: str = DEFAULT_EXPERIMENT,
) -> str:
    """Log `datasets` (with digest and source URI) on the nested run of `stage`; returns that run's id.

    The stage's newest nested run is used (it may already be closed: MLflow accepts inputs then); a stage
    that made none (e.g. a pass-through) gets one, closed at once. No-op ("") when tracking is off.
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri or not pipeline_run_id or not datasets:
        return ""
    client = mlflow_client(uri)
    exp_id, _ = pipeline_context(client, pipeline_run_id, experiment)
    run = latest_stage_run(client, exp_id, pipeline_run_id, stage)
    if run is not None:
        run_id = run.info.run_id
    else:
        with stage_run(
            stage, pipeline_run_id=pipeline_run_id, tracking_uri=uri, experiment=experiment
        ) as made:
            run_id = made.run_id
    client.log_inputs(run_id, datasets=[d.to_entity() for d in datasets])
    return run_id
