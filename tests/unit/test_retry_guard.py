"""Retries only for what a retry can fix (labpipe.retry_guard): a retried attempt of a task whose earlier
attempt failed deterministically ends at once with the same problems; transient failures are not recorded.

How KFP 2.17 retries (the reason the decision is made inside the task): the SDK's `set_retry` has only a
count and a backoff (kfp 2.17.0, dsl/pipeline_task.py; kfp-pipeline-spec 2.17's RetryPolicy has no policy
field); the backend compiles it to an Argo `retryStrategy` with `limit` and `backoff` only
(kubeflow/pipelines, backend/src/v2/compiler/argocompiler/testdata/hello_world_with_retry_all_args.yaml);
kfp.local re-runs the task after sleeping the backoff (kfp/local/orchestrator/task_executor.py)."""

from __future__ import annotations

import pytest

from labpipe.errors import Problem, UserError
from labpipe.llm.failures import check_failures
from labpipe.llm.types import ClientStats
from labpipe.retry_guard import TASK_RETRIES, guard

PROBLEM = Problem(
    "gen/manifest.json", "requests-failed", "3 of 10 teacher requests failed", field="max_failed_share"
)


def _attempt(calls: list[str], error: UserError | None = None, *, task: str = "synthetic_generation-shard0"):
    with guard(task, run_id="run-1"):
        calls.append("work")
        if error is not None:
            raise error


def test_a_retried_attempt_after_a_deterministic_failure_ends_at_once_with_the_same_problems(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("LABPIPE_CACHE", str(tmp_path))
    calls: list[str] = []
    with pytest.raises(UserError) as first:
        _attempt(calls, UserError(PROBLEM))
    for _ in range(TASK_RETRIES):  # every KFP retry: no work, the very same problems
        with pytest.raises(UserError) as again:
            _attempt(calls)
        assert again.value.problems == first.value.problems
    assert calls == ["work"]
    _attempt(calls)  # the replays are used up: a later "retry run" of the same run id tries for real
    assert calls == ["work", "work"]


def test_transient_failures_and_other_tasks_keep_their_retries(tmp_path, monkeypatch):
    monkeypatch.setenv("LABPIPE_CACHE", str(tmp_path))
    calls: list[str] = []
    with pytest.raises(UserError):
        _attempt(calls, UserError(PROBLEM, transient=True))
    with pytest.raises(RuntimeError):  # not a UserError (a bug, a lost pod): nothing recorded either
        with guard("synthetic_generation-shard0", run_id="run-1"):
            raise RuntimeError("boom")
    _attempt(calls)
    with pytest.raises(UserError):
        _attempt(calls, UserError(PROBLEM), task="synthetic_generation-shard1")
    _attempt(calls, task="synthetic_generation-shard0")  # another shard's failure is not this one's
    assert calls == ["work"] * 4


def test_a_failure_recorded_in_mlflow_is_found_without_the_file(tmp_path, monkeypatch):
    """On a cluster without a shared cache the record lives on the pipeline's MLflow run (a SQLite store
    here: the same MlflowClient calls a server gets)."""
    monkeypatch.setenv("LABPIPE_CACHE", str(tmp_path / "pod-1"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    calls: list[str] = []
    with pytest.raises(UserError), guard("critique_filter", run_id="run-2", tracking_uri=uri):
        calls.append("work")
        raise UserError(PROBLEM)
    monkeypatch.setenv("LABPIPE_CACHE", str(tmp_path / "pod-2"))  # a new pod: the local file is gone
    with pytest.raises(UserError) as again, guard("critique_filter", run_id="run-2", tracking_uri=uri):
        calls.append("work")
    assert again.value.problems == [PROBLEM] and calls == ["work"]


def test_without_a_run_id_nothing_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("LABPIPE_CACHE", str(tmp_path))
    with pytest.raises(UserError), guard("synthetic_generation", run_id=""):
        raise UserError(PROBLEM)
    with guard("synthetic_generation", run_id=""):
        pass
    assert not (tmp_path / "failures").exists()


def test_failed_requests_are_transient_only_when_the_deterministic_ones_fit_the_share():
    def stats(*errors: str) -> ClientStats:
        s = ClientStats()
        for e in errors:
            s.record_failure(e)
        return s

    cases = [
        (stats("timeout: no reply", "timeout: no reply", "connection: refused"), True),  # a retry may pass
        (stats("context_length: too long", "http: HTTP 400", "timeout: x"), False),
        (stats("timeout: x", "timeout: x", "not_json: prose"), True),  # 1 deterministic of 10 fits 10%
    ]
    for s, transient in cases:
        with pytest.raises(UserError) as err:
            check_failures(s, 10, max_failed_share=0.1, stage="teacher", where="gen/manifest.json")
        assert err.value.transient is transient, s.failures
