"""submit -> watch -> succeed/fail -> delete, a cancelled run, and a job left by a killed attempt, through the
real `kubernetes` client over HTTP against a FAKE API server on 127.0.0.1 (tests/support/fake_kube.py: it keeps
the objects and flips a job's condition after a few polls; no controller, no pods really run).

The fake serves custom resources as a real API server does (kubernetes/kubernetes master: apiextensions-apiserver
pruning/algorithm.go, apiserver endpoints/handlers/create.go + rest.go): it prunes fields the installed CRD lacks
(with a Warning header) unless the request asks for fieldValidation=Strict, which it refuses with 400. Every
TrainJob test runs against both TrainJob CRDs in ../shared/data/crds: OpenShift AI 3.4-3.5's (opendatahub-io/
trainer release/odh-3.5.0: podTemplateOverrides, no runtimePatches) and upstream's (kubeflow/trainer master:
runtimePatches)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from labpipe.errors import UserError
from labpipe.training import jobs
from tests.support.fake_kube import fake_kube_server, odh_training_crds, upstream_training_crds

pytestmark = pytest.mark.integration
CRDS = {"odh-3.5": odh_training_crds, "upstream": upstream_training_crds}


@pytest.fixture(params=sorted(CRDS))
def kube(tmp_path, request):
    with fake_kube_server(tmp_path, CRDS[request.param]()) as (fake, kubeconfig):
        fake.crd_flavour = request.param
        yield fake, kubeconfig


def _client(kubeconfig):
    from kubernetes import config

    return config.new_client_from_config(str(kubeconfig))


def _spec(backend="trainjob", name="labpipe-knowledge-test", **kw):
    return jobs.JobSpec(name=name, namespace="lab", image="img", train_argv=["--phase", "knowledge"], nodes=2,
                        gpus_per_node=1, backend=backend, **kw)  # fmt: skip


PLACED = dict(node_selector={"nvidia.com/gpu.product": "H100"}, ca_bundle="labpipe-ca",
              tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
              trusted_ca="odh-trusted-ca-bundle", service_account="pipeline-runner-labpipe", env={"A": "1"})


@pytest.mark.parametrize("backend", ["trainjob", "pytorchjob"])
def test_placement_ca_env_and_service_account_survive_on_the_served_schema(kube, backend):
    """What the cluster stores (after its pruning) still holds the node selector, tolerations, CA volumes, env and
    service account: labpipe finds the shape the served CRD knows with strict creates instead of losing them."""
    fake, kubeconfig = kube
    lines = []
    jobs.run_job(_spec(backend, **PLACED), api_client=_client(kubeconfig), poll_seconds=0.05, emit=lines.append)
    (stored,) = fake.created
    assert not fake.warnings  # nothing was pruned
    if backend == "trainjob":
        shape = "podTemplateOverrides" if fake.crd_flavour == "odh-3.5" else "runtimePatches"
        assert shape in stored["spec"]
        pod = (stored["spec"]["podTemplateOverrides"][0]["spec"] if shape == "podTemplateOverrides" else
               stored["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0][
                   "template"]["spec"]["template"]["spec"])  # fmt: skip
        env = {e["name"] for e in stored["spec"]["trainer"]["env"]}
    else:
        pod = stored["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
        env = {e["name"] for e in pod["containers"][0]["env"]}
    assert pod["nodeSelector"] == PLACED["node_selector"] and pod["tolerations"] == PLACED["tolerations"]
    assert {v["name"] for v in pod["volumes"]} == {"ca-bundle", "trusted-ca"}
    assert pod["serviceAccountName"] == "pipeline-runner-labpipe"
    assert {"A", "LABPIPE_CA_BUNDLE", "HTTPS_PROXY"} <= env
    assert all("fieldValidation=Strict" in q for m, q in fake.queries if m == "POST")


def test_the_fake_prunes_unknown_fields_like_an_api_server(kube):
    """The double is not lenient: without strict validation the other schema's field is dropped, with a Warning
    (fieldValidation=Warn, the server default); with Strict it is a 400 naming the field."""
    from kubernetes import client as k8s
    from kubernetes.client.rest import ApiException

    fake, kubeconfig = kube
    custom = k8s.CustomObjectsApi(_client(kubeconfig))
    foreign = "runtimePatches" if fake.crd_flavour == "odh-3.5" else "podTemplateOverrides"
    body = jobs.manifest(_spec(**PLACED), foreign)
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", "lab", "trainjobs", body,
                                               field_validation="Strict")  # fmt: skip
    assert refused.value.status == 400 and jobs.unknown_fields(refused.value) == [f"spec.{foreign}"]
    stored, status, headers = custom.create_namespaced_custom_object_with_http_info(
        "trainer.kubeflow.org", "v1alpha1", "lab", "trainjobs", body)
    assert status == 201 and foreign not in stored["spec"] and fake.warnings == [f'unknown field "spec.{foreign}"']
    assert headers["Warning"] == f'299 - "unknown field \\"spec.{foreign}\\""'  # what the client sees
    assert stored["spec"]["trainer"]["image"] == "img"  # the known fields stay
    with pytest.raises(ApiException) as absent:  # a kind no installed CRD defines is not served
        custom.create_namespaced_custom_object("kubeflow.org", "v1", "lab", "mpijobs", {"metadata": {"name": "x"}})
    assert absent.value.status == 404


def test_a_field_the_cluster_would_drop_is_an_error_that_names_it(kube):
    fake, kubeconfig = kube
    foreign = "runtimePatches" if fake.crd_flavour == "odh-3.5" else "podTemplateOverrides"
    with pytest.raises(UserError, match=f"schema would drop spec.{foreign}"):
        jobs.run_job(_spec(**PLACED, trainjob_schema=foreign), api_client=_client(kubeconfig), poll_seconds=0.05,
                     emit=lambda _: None)  # fmt: skip
    assert not fake.created


def test_an_unschedulable_job_fails_with_the_schedulers_reason_and_is_deleted(kube):
    fake, kubeconfig = kube
    reason = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu. preemption: 0/4 nodes are available"
    fake.scenarios["labpipe-knowledge-test"] = {"outcome": "unschedulable"}
    fake.events.append({"metadata": {"name": "labpipe-knowledge-test-node-0-0.1", "namespace": "lab"},
                        "involvedObject": {"kind": "Pod", "name": "labpipe-knowledge-test-node-0-0", "namespace": "lab"},
                        "reason": "FailedScheduling", "message": reason, "type": "Warning",
                        "lastTimestamp": "2026-12-07T12:00:00Z"})  # fmt: skip
    with pytest.raises(jobs.JobFailed, match=f"Unschedulable for 0.2s: pod labpipe-knowledge-test-node-0-0: {reason}"):
        jobs.run_job(_spec(unschedulable_s=0.2), api_client=_client(kubeconfig), poll_seconds=0.05,
                     emit=lambda _: None)  # fmt: skip
    assert fake.deleted == ["labpipe-knowledge-test"] and not fake.objects


def test_a_job_past_its_deadline_fails_and_is_deleted(kube):
    fake, kubeconfig = kube
    fake.scenarios["labpipe-knowledge-test"] = {"outcome": "run"}
    with pytest.raises(jobs.JobFailed, match="DeadlineExceeded: not finished after 0.3s"):
        jobs.run_job(_spec(deadline_s=0.3), api_client=_client(kubeconfig), poll_seconds=0.05, emit=lambda _: None)
    assert fake.deleted == ["labpipe-knowledge-test"] and not fake.objects


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
from labpipe.errors import UserError
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
