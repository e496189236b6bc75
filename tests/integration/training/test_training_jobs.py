"""submit -> watch -> succeed/fail -> delete, a cancelled run, and a job left by a killed attempt, through the
real `kubernetes` client over HTTP against a FAKE API server on 127.0.0.1 (tests/support/fake_kube.py: it keeps
the objects and flips a job's condition after a few polls; no controller, no pods really run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from labpipe.training import jobs
from tests.support.fake_kube import fake_kube_server

pytestmark = pytest.mark.integration


@pytest.fixture
def kube(tmp_path):
    with fake_kube_server(tmp_path) as (fake, kubeconfig):
        yield fake, kubeconfig


def _client(kubeconfig):
    from kubernetes import config

    return config.new_client_from_config(str(kubeconfig))


def _spec(backend="trainjob", name="labpipe-knowledge-test"):
    return jobs.JobSpec(name=name, namespace="lab", image="img", train_argv=["--phase", "knowledge"], nodes=2,
                        gpus_per_node=1, backend=backend)  # fmt: skip


@pytest.mark.parametrize("backend", ["trainjob", "pytorchjob"])
def test_a_job_that_succeeds_streams_node0_logs_and_is_deleted(kube, backend):
    fake, kubeconfig = kube
    lines = []
    job = jobs.run_job(_spec(backend), api_client=_client(kubeconfig), poll_seconds=0.05, emit=lines.append)
    assert job["metadata"]["name"] == "labpipe-knowledge-test"
    assert "training done" in lines and "step 1 loss 6.37" in lines  # node 0's log reached the task's log
    assert fake.deleted == ["labpipe-knowledge-test"] and not fake.objects
    group, version, plural, _ = jobs.TRAINJOB if backend == "trainjob" else jobs.PYTORCHJOB
    assert ("POST", f"/apis/{group}/{version}/namespaces/lab/{plural}") in fake.requests
    assert ("DELETE", f"/apis/{group}/{version}/namespaces/lab/{plural}/labpipe-knowledge-test") in fake.requests


@pytest.mark.parametrize("backend", ["trainjob", "pytorchjob"])
def test_a_failed_job_fails_the_task_with_its_reason_and_is_deleted(kube, backend):
    fake, kubeconfig = kube
    fake.scenarios["labpipe-knowledge-test"] = {"outcome": "fail", "after": 1, "reason": "BackoffLimitExceeded",
                                                "message": "node 1 exited with code 137 (OOMKilled)"}  # fmt: skip
    with pytest.raises(jobs.JobFailed, match="failed: BackoffLimitExceeded: node 1 exited with code 137"):
        jobs.run_job(_spec(backend), api_client=_client(kubeconfig), poll_seconds=0.05, emit=lambda _: None)
    assert fake.deleted == ["labpipe-knowledge-test"] and not fake.objects


def test_a_job_left_by_a_killed_attempt_is_replaced(kube):
    fake, kubeconfig = kube
    fake.objects[("trainjobs", "lab", "labpipe-knowledge-test")] = jobs.manifest(_spec())
    lines = []
    jobs.run_job(_spec(), api_client=_client(kubeconfig), poll_seconds=0.05, emit=lines.append)
    assert any("exists (left by an earlier attempt)" in line for line in lines)
    assert fake.deleted == ["labpipe-knowledge-test", "labpipe-knowledge-test"] and not fake.objects


CANCELLED_CHILD = """
import sys
from labpipe.training import jobs
spec = jobs.JobSpec(name="labpipe-skills-cancel", namespace="lab", image="img", train_argv=[], nodes=2)
try:
    jobs.run_job(spec, poll_seconds=0.1)
except jobs.JobCancelled as exc:
    print("CANCELLED", exc, flush=True)
    sys.exit(143)
"""


def test_a_cancelled_run_deletes_the_job(kube, tmp_path):
    """KFP stops a cancelled run's pod with SIGTERM: the task deletes its job before it exits."""
    fake, kubeconfig = kube
    fake.scenarios["labpipe-skills-cancel"] = {"outcome": "run"}
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}  # the task finds the API server as in a pod: kubeconfig
    proc = subprocess.Popen([sys.executable, "-c", CANCELLED_CHILD], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while fake.gets.get("labpipe-skills-cancel", 0) < 2:  # it is watching a running job
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert "CANCELLED" in out and "cancelled (signal 15)" in out
    assert fake.deleted == ["labpipe-skills-cancel"] and not fake.objects
