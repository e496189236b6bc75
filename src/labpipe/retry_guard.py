"""Retries only for what a retry can fix: a pipeline task retried after a deterministic failure ends at once.

KFP retries a failed task (`set_retry` in pipelines/lab_pipeline.py) whatever made it fail. KFP 2.17
cannot say which failures to retry: its RetryPolicy (kfp-pipeline-spec 2.17) has only a count and a
backoff, and the backend compiles it to an Argo `retryStrategy` with `limit` and `backoff` and no
`retryPolicy` or `expression` (kubeflow/pipelines, backend/src/v2/compiler/argocompiler, release 2.17;
kfp.local's orchestrator/task_executor.py retries the same way, sleeping the backoff). So the decision is
made inside the task:

- the attempt that fails with a deterministic error (a UserError that is not `transient`: a user error,
  requests that failed in a way a resend does not fix, an invalid evaluation) records its problems in
  durable state keyed by the pipeline run id and the task (`guard`'s `task`, e.g. the generation shard);
- a retried attempt of that task reads the record first and fails at once with the very same problems:
  no model is loaded and no request is sent again, and the run's final error lists each problem once;
- transient failures (an endpoint unreachable, a storm of 5xx or timeouts, a lost pod: anything that is
  not a deterministic UserError) record nothing and keep their retries.

The record allows as many replays as the task has retries (TASK_RETRIES) and is then removed, so that a
later "retry run" of the same pipeline run (KFP keeps the run id) after a fix tries for real. The backoff
between attempts is the orchestrator's and cannot be skipped from inside a task in KFP 2.17.

Durable state: a JSON file under `root` (the generation cache's s3:// prefix on a cluster; otherwise
$LABPIPE_CACHE/failures, durable under kfp.local) and, when a tracking URI is known, a tag on the
pipeline's MLflow run (durable on a cluster with MLflow even without a shared cache).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from labpipe.errors import Problem, UserError

log = logging.getLogger(__name__)

TASK_RETRIES = 3  # KFP retries of the tasks that talk to endpoints or train (pipelines/lab_pipeline.py)
TAG_PREFIX = "labpipe.deterministic_failure."
MLFLOW_TAG_LIMIT = 7500  # MLflow keeps tag values up to 8000 characters


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:120] or "_"


def _file_uri(root: str, run_id: str, task: str) -> str:
    from labpipe import storage

    if root and storage.is_s3(root):
        return storage.join(root, "failures", _safe(run_id), f"{_safe(task)}.json")
    return str(storage.cache_dir() / "failures" / _safe(run_id) / f"{_safe(task)}.json")


@contextmanager
def guard(task: str, *, run_id: str, tracking_uri: str = "", root: str = "") -> Iterator[None]:
    """Around one pipeline task's work (see the module docstring); without a run id it does nothing."""
    if not run_id:
        yield
        return
    marker = _Marker(task, run_id, tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", ""), root)
    recorded = marker.read()
    if recorded is not None:
        problems, left = recorded
        marker.write(problems, left - 1)
        print(
            f"labpipe: an earlier attempt of task {task} failed for a reason a retry does not fix; "
            "ending this attempt at once with the same problems (nothing is sent again)",
            file=sys.stderr,
        )
        raise UserError(problems)
    try:
        yield
    except UserError as exc:
        if not exc.transient:
            marker.write(exc.problems, TASK_RETRIES)
        raise


class _Marker:
    def __init__(self, task: str, run_id: str, tracking_uri: str, root: str):
        self.task, self.run_id, self.tracking_uri = task, run_id, tracking_uri
        self.uri = _file_uri(root, run_id, task)

    def read(self) -> tuple[list[Problem], int] | None:
        data = self._read_file()
        if data is None:
            data = self._read_mlflow()
        if not data or int(data.get("replays_left", 0)) <= 0:
            return None
        try:
            return [Problem(**p) for p in data["problems"]], int(data["replays_left"])
        except (KeyError, TypeError):
            return None

    def write(self, problems: list[Problem], replays_left: int) -> None:
        """Record (or, with no replays left, remove) the failure; never fails the task itself."""
        data = {"task": self.task, "run_id": self.run_id, "replays_left": replays_left, "at": time.time(),
                "problems": [asdict(p) for p in problems]}  # fmt: skip
        try:
            self._write_file(data if replays_left > 0 else None)
        except Exception as exc:  # best effort: the task's own error matters more
            log.warning("cannot record the failure of task %s at %s: %s", self.task, self.uri, exc)
        if self.tracking_uri:
            try:
                self._write_mlflow(data if replays_left > 0 else None)
            except Exception as exc:
                log.warning("cannot record the failure of task %s in MLflow: %s", self.task, exc)

    # the file (local or s3://) ---------------------------------------------------------------------
    def _read_file(self) -> dict[str, Any] | None:
        from labpipe import storage

        try:
            if not storage.exists(self.uri):
                return None
            return json.loads(storage.read_text(self.uri))
        except Exception:  # unreadable: as if there were none (the task then runs for real)
            return None

    def _write_file(self, data: dict[str, Any] | None) -> None:
        from labpipe import storage

        if data is not None:
            storage.write_text(self.uri, json.dumps(data))
        elif storage.is_s3(self.uri):
            bucket, key = storage.split_s3(self.uri)
            storage.s3_client().delete_object(Bucket=bucket, Key=key)
        else:
            from pathlib import Path

            Path(self.uri).unlink(missing_ok=True)

    # the pipeline's MLflow run ---------------------------------------------------------------------
    def _parent(self):
        from mlflow.tracking import MlflowClient

        from labpipe.runs import tracking

        client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment = tracking._experiment_id(client, tracking.DEFAULT_EXPERIMENT)
        return client, tracking.pipeline_run(client, experiment, self.run_id)

    def _read_mlflow(self) -> dict[str, Any] | None:
        if not self.tracking_uri:
            return None
        try:
            client, parent = self._parent()
            value = client.get_run(parent).data.tags.get(TAG_PREFIX + _safe(self.task), "")
            return json.loads(value) if value else None
        except Exception:
            return None

    def _write_mlflow(self, data: dict[str, Any] | None) -> None:
        client, parent = self._parent()
        key = TAG_PREFIX + _safe(self.task)
        if data is None:
            client.set_tag(parent, key, "")
            return
        value = json.dumps(data)
        if len(value) > MLFLOW_TAG_LIMIT:  # keep it readable JSON: shorten the messages, not the text
            for p in data["problems"]:
                p["message"] = p["message"][: max(200, MLFLOW_TAG_LIMIT // (2 * len(data["problems"])))]
            value = json.dumps(data)[:MLFLOW_TAG_LIMIT]
        client.set_tag(parent, key, value)
