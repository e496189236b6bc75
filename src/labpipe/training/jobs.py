"""Training across nodes: `labpipe train` as a Kubeflow Trainer v2 TrainJob (or a legacy PyTorchJob).

The SFT task submits the job, streams the log of node 0, waits, and deletes the job in every case: success,
failure (the task fails with the job's reason) and cancellation (KFP stops a cancelled run's pod with SIGTERM;
the handler turns it into `JobCancelled` so the `finally` deletes the job before the pod goes).

Manifests are built from typed models: `kubeflow-trainer-api` (TrainJob, trainer.kubeflow.org/v1alpha1) and
`kubeflow-training` (PyTorchJob, kubeflow.org/v1, on the kubernetes client's models). The lifecycle goes
through the `kubernetes` client (CustomObjectsApi, CoreV1Api) rather than the Kubeflow SDK's TrainerClient:
TrainerClient builds jobs from its own trainer types (a Python function or a built-in recipe), with no way to
run a given command in a given image with secrets, a CA bundle and a checkpoint location; the typed models
give the same schema guarantees. RBAC the task's service account needs (in its namespace):
trainjobs.trainer.kubeflow.org (or pytorchjobs.kubeflow.org): create, get, delete; pods: list;
pods/log: get.

Which TrainJob schema the cluster serves: the Trainer that OpenShift AI 3.4-3.5 ships (opendatahub-io/trainer
release/odh-3.5.0) places pods with `spec.podTemplateOverrides`; upstream Kubeflow Trainer >= 2.2 has
`spec.runtimePatches` instead, and an API server drops a field its CRD lacks *without an error* unless the
request asks for strict field validation. So every create is sent with `fieldValidation=Strict` (the server then
answers 400 "strict decoding error: unknown field ..." rather than pruning), in the OpenShift AI shape first and
the upstream one next: the first the cluster accepts whole is the one it serves. This needs no extra RBAC (reading
the CRD is cluster-scoped) and is exact for the served version; any other field the cluster would drop is a
UserError that names it. Both shapes carry the same pod settings (node selector, tolerations, CA volumes,
service account, built from the typed PodSpecPatch of kubeflow-trainer-api, whose models have no
podTemplateOverrides: the override's envelope - targetJobs + spec - is added to the typed job's dict); env,
image, command and resources are in `spec.trainer`, the same in both.

The launcher only follows the job: a deadline (`deadline_s`) bounds the whole job, and pods that stay
unschedulable for `unschedulable_s` fail it with the scheduler's reason from the pod's FailedScheduling events
(RBAC: events: list). The job's pods run under the task's own service account (`service_account`, the pipeline's
runner), not the namespace's `default`. `queue_name` labels the job for Kueue (kueue.x-k8s.io/queue-name).

Data, base model and checkpoints travel through S3 (the job's pods mount the same S3 secret as the task).
The torch runtime of a ClusterTrainingRuntime injects PET_NNODES / PET_NODE_RANK / PET_MASTER_ADDR /
PET_MASTER_PORT / PET_NPROC_PER_NODE into every node; `labpipe train` reads them (launch.py).
The manifests themselves: training/job_manifests.py (re-exported here).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labpipe.errors import Problem, UserError
from labpipe.training.job_manifests import (
    BACKENDS,
    CA_KEY,
    CA_MOUNT,
    MLFLOW_KEYS,
    MLFLOW_SECRET,
    NETWORK_CONFIG,
    PROXY_KEYS,
    PYTORCHJOB,
    QUEUE_LABEL,
    S3_SECRET_KEYS,
    TRAINJOB,
    TRAINJOB_SCHEMAS,
    TRUSTED_CA_CONFIG,
    TRUSTED_CA_KEYS,
    TRUSTED_CA_MOUNT,
    JobSpec,
    ca_bundle_paths,
    job_name,
    manifest,
    node0_selector,
    pytorchjob_manifest,
    trainjob_manifest,
    unknown_backend,
)

__all__ = [
    "BACKENDS",
    "CA_KEY",
    "CA_MOUNT",
    "JobCancelled",
    "JobFailed",
    "JobSpec",
    "MLFLOW_KEYS",
    "MLFLOW_SECRET",
    "NETWORK_CONFIG",
    "PROXY_KEYS",
    "PYTORCHJOB",
    "QUEUE_LABEL",
    "S3_SECRET_KEYS",
    "TRAINJOB",
    "TRAINJOB_SCHEMAS",
    "TRUSTED_CA_CONFIG",
    "TRUSTED_CA_KEYS",
    "TRUSTED_CA_MOUNT",
    "ca_bundle_paths",
    "job_name",
    "manifest",
    "node0_selector",
    "pytorchjob_manifest",
    "trainjob_manifest",
    "unknown_backend",
]


class JobFailed(RuntimeError):
    """The job ended in a failed state; the message carries its reason."""


class JobCancelled(RuntimeError):
    """The task was asked to stop (SIGTERM / SIGINT) while the job ran."""


def job_outcome(job: dict[str, Any], backend: str) -> tuple[str, str] | None:
    """("succeeded" | "failed", reason) once the job's conditions say it ended; None while it runs."""
    done, failed = ("Complete", "Failed") if backend == "trainjob" else ("Succeeded", "Failed")
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        reason = ": ".join(x for x in (cond.get("reason"), cond.get("message")) if x)
        if cond.get("type") == failed:
            return "failed", reason or "failed"
        if cond.get("type") == done:
            return "succeeded", reason
    return None


class _LogStreamer(threading.Thread):
    """Follows node 0's log once its pod exists; prints each line as it comes."""

    def __init__(self, core, spec: JobSpec, emit: Callable[[str], None]):
        super().__init__(daemon=True)
        self.core, self.spec, self.emit = core, spec, emit
        self.stop = threading.Event()
        self.lines = 0

    def run(self) -> None:
        container = "node" if self.spec.backend == "trainjob" else "pytorch"
        while not self.stop.is_set():
            try:
                pods = self.core.list_namespaced_pod(
                    self.spec.namespace, label_selector=node0_selector(self.spec)
                )
                if pods.items:
                    resp = self.core.read_namespaced_pod_log(
                        pods.items[0].metadata.name, self.spec.namespace, container=container, follow=True,
                        _preload_content=False,
                    )  # fmt: skip
                    for raw in resp.stream():
                        for line in raw.decode("utf-8", "replace").splitlines():
                            self.emit(line)
                            self.lines += 1
                    return
            except Exception:  # the pod is starting, or the API hiccups: try again
                pass
            self.stop.wait(2.0)


def run_job(
    spec: JobSpec,
    *,
    api_client=None,
    poll_seconds: float = 5.0,
    emit: Callable[[str], None] | None = None,
    handle_signals: bool = True,
) -> dict[str, Any]:
    """Submit the job, stream node 0's log, wait for the end, delete the job (always). Returns its last state."""
    from kubernetes import client as k8s

    emit = emit or (lambda line: print(line, file=sys.stderr, flush=True))
    api_client = api_client or kube_client()
    custom, core = k8s.CustomObjectsApi(api_client), k8s.CoreV1Api(api_client)
    group, version, plural, kind = TRAINJOB if spec.backend == "trainjob" else PYTORCHJOB

    def cancel(signum, _frame):
        raise JobCancelled(f"{kind} {spec.name}: cancelled (signal {signum})")

    previous = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, cancel) for s in (signal.SIGTERM, signal.SIGINT)}
    streamer = _LogStreamer(core, spec, emit)
    try:
        _create_served(custom, spec, emit, poll_seconds)
        emit(
            f"{kind} {spec.namespace}/{spec.name}: submitted ({spec.nodes} node(s) x {spec.gpus_per_node} GPU(s))"
        )
        streamer.start()
        started, unschedulable_since = time.monotonic(), None
        while True:
            job = custom.get_namespaced_custom_object(group, version, spec.namespace, plural, spec.name)
            outcome = job_outcome(job, spec.backend)
            if outcome:
                streamer.join(timeout=10)  # let the last lines of the log arrive
                state, reason = outcome
                if state == "failed":
                    raise JobFailed(f"{kind} {spec.name} failed: {reason}")
                emit(f"{kind} {spec.name}: succeeded")
                return job
            now = time.monotonic()
            if spec.deadline_s and now - started > spec.deadline_s:
                raise JobFailed(f"{kind} {spec.name} failed: DeadlineExceeded: not finished after "
                                f"{spec.deadline_s:g}s (training_deadline_minutes)")  # fmt: skip
            reason = unschedulable_reason(core, spec)
            if reason is None:
                unschedulable_since = None
            else:
                unschedulable_since = unschedulable_since or now
                if now - unschedulable_since >= spec.unschedulable_s:
                    raise JobFailed(
                        f"{kind} {spec.name} failed: Unschedulable for {spec.unschedulable_s:g}s: {reason}"
                    )
            time.sleep(poll_seconds)
    finally:
        streamer.stop.set()
        for s, handler in previous.items():
            signal.signal(s, handler)
        _delete(custom, group, version, spec.namespace, plural, spec.name, emit)


def job_selector(spec: JobSpec) -> str:
    """The label selector of all the job's pods."""
    if spec.backend == "trainjob":
        return f"jobset.sigs.k8s.io/jobset-name={spec.name}"
    return f"training.kubeflow.org/job-name={spec.name}"


def unschedulable_reason(core, spec: JobSpec) -> str | None:
    """The scheduler's reason when a pod of the job is Pending as Unschedulable (its latest FailedScheduling
    event, else the PodScheduled condition's message); None while every pod is scheduled or none exists."""
    pods = core.list_namespaced_pod(spec.namespace, label_selector=job_selector(spec)).items
    for pod in pods:
        conditions = (pod.status and pod.status.conditions) or []
        stuck = [c for c in conditions if c.type == "PodScheduled" and c.status == "False"
                 and c.reason == "Unschedulable"]  # fmt: skip
        if not stuck:
            continue
        name = pod.metadata.name
        events = core.list_namespaced_event(
            spec.namespace, field_selector=f"involvedObject.kind=Pod,involvedObject.name={name}"
        ).items
        failed = [e for e in events if e.reason == "FailedScheduling" and e.message]
        if failed:
            latest = max(failed, key=lambda e: str(e.last_timestamp or e.event_time or ""))
            return f"pod {name}: {latest.message}"
        return f"pod {name}: {stuck[0].message or 'Unschedulable'}"
    return None


def _create_served(custom, spec: JobSpec, emit, poll_seconds) -> str:
    """Create the job in the shape the cluster serves (strict field validation); returns that TrainJob schema."""
    from kubernetes.client.rest import ApiException

    group, version, plural, kind = TRAINJOB if spec.backend == "trainjob" else PYTORCHJOB
    schemas = (
        [spec.trainjob_schema]
        if spec.trainjob_schema or spec.backend != "trainjob"
        else list(TRAINJOB_SCHEMAS)
    )
    refused: dict[str, list[str]] = {}
    for schema in schemas:
        body = manifest(spec, schema)
        try:
            _create(custom, group, version, spec.namespace, plural, body, kind, emit, poll_seconds)
            return schema
        except ApiException as exc:
            unknown = unknown_fields(exc)
            if exc.status != 400 or not unknown:
                raise
            refused[schema] = unknown
            own = f"spec.{schema}"
            if schema != schemas[-1] and all(
                f == own or f.startswith((own + ".", own + "[")) for f in unknown
            ):
                emit(
                    f"{kind}: this cluster's schema has no {own}; trying spec.{schemas[schemas.index(schema) + 1]}"
                )
                continue
            break
    fields = sorted({f for unknown in refused.values() for f in unknown})
    raise UserError(Problem(
        where=f"{kind} {spec.namespace}/{spec.name}", rule="served-schema", field=", ".join(fields),
        message=f"the cluster's {kind} schema would drop {', '.join(fields)} (strict field validation refused it; "
                "the job would lose its node selector, tolerations, CA or service account)",
        fix=f"install a Trainer whose {kind} CRD has these fields (OpenShift AI 3.4+: podTemplateOverrides; "
            "Kubeflow Trainer >= 2.2: runtimePatches), or remove the settings that need them",
    ))  # fmt: skip


def unknown_fields(exc) -> list[str]:
    """The field paths of a 400 'strict decoding error: unknown field "a.b", ...' answer ([] for other errors)."""
    import json
    import re

    try:
        message = json.loads(exc.body or "{}").get("message", "")
    except (ValueError, AttributeError):
        message = str(exc.body or "")
    if "strict decoding error" not in message:
        return []
    return re.findall(r'unknown field "([^"]+)"', message)


def _create(custom, group, version, namespace, plural, body, kind, emit, poll_seconds) -> None:
    from kubernetes.client.rest import ApiException

    name = body["metadata"]["name"]
    try:
        custom.create_namespaced_custom_object(
            group, version, namespace, plural, body, field_validation="Strict"
        )
        return
    except ApiException as exc:
        if exc.status != 409:
            raise
    # A job of this run and phase survived a killed task: replace it (the new one resumes from the checkpoints).
    emit(f"{kind} {name} exists (left by an earlier attempt): deleting it first")
    _delete(custom, group, version, namespace, plural, name, emit)
    for _ in range(120):
        try:
            custom.get_namespaced_custom_object(group, version, namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                break
            raise
        time.sleep(min(poll_seconds, 1.0))
    custom.create_namespaced_custom_object(group, version, namespace, plural, body, field_validation="Strict")


def _delete(custom, group, version, namespace, plural, name, emit) -> None:
    from kubernetes.client.rest import ApiException

    try:
        custom.delete_namespaced_custom_object(
            group, version, namespace, plural, name, body={"propagationPolicy": "Foreground"}
        )
        emit(f"{plural[:-1]} {name}: deleted")
    except ApiException as exc:
        if exc.status != 404:
            emit(f"{plural[:-1]} {name}: delete failed ({exc.status} {exc.reason}); delete it by hand")


def kube_client():
    """In a pod: the service account; elsewhere: KUBECONFIG / ~/.kube/config."""
    from kubernetes import client as k8s
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        # KUBECONFIG read now: the kubernetes package reads it once, at import, for its default
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
    return k8s.ApiClient()


def current_namespace(default: str = "default") -> str:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if path.is_file():
        return path.read_text().strip()
    try:
        from kubernetes import config

        _, context = config.list_kube_config_contexts(config_file=os.environ.get("KUBECONFIG") or None)
        return context["context"].get("namespace") or default
    except Exception:
        return default


SERVICE_ACCOUNT_ENV = (
    "LABPIPE_SERVICE_ACCOUNT"  # set on the SFT task from the downward API (spec.serviceAccountName)
)


def current_service_account() -> str:
    """The service account this pod runs as ("" outside a pod): LABPIPE_SERVICE_ACCOUNT, else the `sub` of the
    mounted token (system:serviceaccount:<namespace>:<name>)."""
    import base64
    import json

    if os.environ.get(SERVICE_ACCOUNT_ENV):
        return os.environ[SERVICE_ACCOUNT_ENV]
    token = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
    try:
        payload = token.read_text().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return claims.get("sub", "").rsplit(":", 1)[-1] if claims.get("sub", "").count(":") == 3 else ""
    except (OSError, IndexError, ValueError):
        return ""
