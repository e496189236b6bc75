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
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labpipe.errors import Problem, UserError

BACKENDS = ("pod", "trainjob", "pytorchjob")
# The S3 data connection, as the pipeline maps it for its own tasks (pipelines/lab_pipeline.py S3_SECRET_KEYS).
S3_SECRET_KEYS = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
    "AWS_S3_ENDPOINT": "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION": "AWS_DEFAULT_REGION",
}
# The job's pods get what every pipeline task gets (pipelines/lab_pipeline.py, labpipe.net): the optional CA
# bundle secret as a file named by LABPIPE_CA_BUNDLE, the optional proxy ConfigMap and MLflow secret as env.
CA_MOUNT = "/etc/labpipe/ca"
CA_KEY = "ca.crt"
# OpenShift AI injects this ConfigMap into projects (opendatahub-io/opendatahub-operator, trustedCABundle of the
# DSCInitialization): ca-bundle.crt = the cluster's CAs (injected by the network operator), odh-ca-bundle.crt = the
# custom CA bundle. Mounted optionally next to labpipe-ca; labpipe.net adds whatever exists to the public roots.
TRUSTED_CA_CONFIG = "odh-trusted-ca-bundle"
TRUSTED_CA_MOUNT = "/etc/labpipe/odh-ca"
TRUSTED_CA_KEYS = ("ca-bundle.crt", "odh-ca-bundle.crt")
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# The two TrainJob shapes for pod settings, in the order they are tried (see the module docstring).
TRAINJOB_SCHEMAS = ("podTemplateOverrides", "runtimePatches")
NETWORK_CONFIG = "labpipe-network"
PROXY_KEYS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
MLFLOW_SECRET = "labpipe-mlflow"
MLFLOW_KEYS = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_AUTH", "MLFLOW_WORKSPACE")
TRAINJOB = ("trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob")
PYTORCHJOB = ("kubeflow.org", "v1", "pytorchjobs", "PyTorchJob")


@dataclass
class JobSpec:
    """What to run where: `labpipe train <train_argv>` on `nodes` x `gpus_per_node`."""

    name: str
    namespace: str
    image: str
    train_argv: list[str]
    nodes: int = 2
    gpus_per_node: int = 1
    backend: str = "trainjob"  # trainjob | pytorchjob
    runtime: str = "torch-distributed"  # the ClusterTrainingRuntime (trainjob)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    s3_secret: str = ""  # the data connection secret; mounted as the AWS_* variables (optional keys)
    ca_bundle: str = ""  # a secret holding ca.crt (labpipe-ca); mounted and named by LABPIPE_CA_BUNDLE
    env: dict[str, str] = field(default_factory=dict)
    cpu: str = ""  # per node requests (and limits for memory); "" = the runtime's
    memory: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    trusted_ca: str = ""  # the platform's CA ConfigMap (odh-trusted-ca-bundle), mounted optionally
    service_account: str = ""  # the pods' service account ("" = the runtime's, i.e. the namespace's default)
    queue_name: str = ""  # Kueue LocalQueue: the kueue.x-k8s.io/queue-name label
    deadline_s: float = 0  # the job fails (and is deleted) when it has not ended after this long; 0 = no deadline
    unschedulable_s: float = 600  # pods unschedulable this long fail the job with the scheduler's reason
    trainjob_schema: str = ""  # podTemplateOverrides | runtimePatches; "" = find out with strict creates


def ca_bundle_paths(spec: JobSpec) -> list[str]:
    """The CA files the job's pods may hold (each optional), in LABPIPE_CA_BUNDLE order."""
    paths = [f"{CA_MOUNT}/{CA_KEY}"] if spec.ca_bundle else []
    return paths + ([f"{TRUSTED_CA_MOUNT}/{key}" for key in TRUSTED_CA_KEYS] if spec.trusted_ca else [])


def job_name(run_id: str, phase: str) -> str:
    """A DNS-1123 name, stable for a run and phase (a retried task finds its predecessor's job)."""
    digest = hashlib.sha256(f"{run_id}/{phase}".encode()).hexdigest()[:10]
    return f"labpipe-{phase[:9]}-{digest}"


def _env(spec: JobSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    if spec.s3_secret:
        env += [
            {"name": var, "valueFrom": {"secretKeyRef": {"name": spec.s3_secret, "key": key, "optional": True}}}
            for key, var in S3_SECRET_KEYS.items()
        ]
    if ca_bundle_paths(spec):  # labpipe.net adds them to the public roots for S3, MLflow, git and endpoints
        env.append({"name": "LABPIPE_CA_BUNDLE", "value": os.pathsep.join(ca_bundle_paths(spec))})
    env += [{"name": k, "valueFrom": {"configMapKeyRef": {"name": NETWORK_CONFIG, "key": k, "optional": True}}}
            for k in PROXY_KEYS]
    env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": MLFLOW_SECRET, "key": k, "optional": True}}}
            for k in MLFLOW_KEYS]
    return env


def _volumes(spec: JobSpec) -> tuple[list[dict], list[dict]]:
    volumes, mounts = [], []
    if spec.ca_bundle:
        volumes.append({"name": "ca-bundle", "secret": {"secretName": spec.ca_bundle, "optional": True}})
        mounts.append({"name": "ca-bundle", "mountPath": CA_MOUNT, "readOnly": True})
    if spec.trusted_ca:
        volumes.append({"name": "trusted-ca", "configMap": {"name": spec.trusted_ca, "optional": True}})
        mounts.append({"name": "trusted-ca", "mountPath": TRUSTED_CA_MOUNT, "readOnly": True})
    return volumes, mounts


def _labels(spec: JobSpec) -> dict[str, str] | None:
    labels = dict(spec.labels) | ({QUEUE_LABEL: spec.queue_name} if spec.queue_name else {})
    return labels or None


def _resources(spec: JobSpec) -> dict[str, Any]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if spec.gpus_per_node > 0:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(spec.gpus_per_node)
    if spec.cpu:
        requests["cpu"] = spec.cpu
    if spec.memory:
        requests["memory"] = limits["memory"] = spec.memory
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def _command(spec: JobSpec) -> list[str]:
    return ["labpipe", "train", *spec.train_argv]


def trainjob_manifest(spec: JobSpec, schema: str = TRAINJOB_SCHEMAS[0]) -> dict[str, Any]:
    """The TrainJob (trainer.kubeflow.org/v1alpha1) against a ClusterTrainingRuntime, from the typed models, with
    the pod settings in `schema`: podTemplateOverrides (OpenShift AI 3.4-3.5) or runtimePatches (upstream)."""
    from kubeflow_trainer_api import models as m

    if schema not in TRAINJOB_SCHEMAS:
        raise ValueError(f"unknown TrainJob schema {schema!r}")
    volumes, mounts = _volumes(spec)
    pod = m.TrainerV1alpha1PodSpecPatch.from_dict(
        {
            "nodeSelector": spec.node_selector or None,
            "tolerations": spec.tolerations or None,
            "volumes": volumes or None,
            "containers": [{"name": "node", "volumeMounts": mounts}] if mounts else None,
            "serviceAccountName": spec.service_account or None,
        }
    ).to_dict()
    job = m.TrainerV1alpha1TrainJob(
        api_version=f"{TRAINJOB[0]}/{TRAINJOB[1]}",
        kind=TRAINJOB[3],
        metadata=m.IoK8sApimachineryPkgApisMetaV1ObjectMeta(
            name=spec.name, namespace=spec.namespace, labels=_labels(spec)
        ),
        spec=m.TrainerV1alpha1TrainJobSpec(
            runtime_ref=m.TrainerV1alpha1RuntimeRef(
                name=spec.runtime, kind="ClusterTrainingRuntime", api_group=TRAINJOB[0]
            ),
            trainer=m.TrainerV1alpha1Trainer.from_dict(
                {
                    "image": spec.image,
                    "command": _command(spec),
                    "env": _env(spec) or None,
                    "numNodes": spec.nodes,
                    "numProcPerNode": max(spec.gpus_per_node, 1),
                    "resourcesPerNode": _resources(spec) or None,
                }
            ),
            runtime_patches=[
                m.TrainerV1alpha1RuntimePatch.from_dict(
                    {
                        "manager": "labpipe.io/sft",
                        "trainingRuntimeSpec": {
                            "template": {
                                "spec": {
                                    "replicatedJobs": [
                                        {"name": "node", "template": {"spec": {"template": {"spec": pod}}}}
                                    ]
                                }
                            }
                        },
                    }
                )
            ]
            if pod and schema == "runtimePatches"
            else None,
        ),
    )
    body = job.to_dict()
    if pod and schema == "podTemplateOverrides":  # release/odh-3.5.0's field; not in the typed models
        body["spec"]["podTemplateOverrides"] = [{"targetJobs": [{"name": "node"}], "spec": pod}]
    return body


def pytorchjob_manifest(spec: JobSpec) -> dict[str, Any]:
    """The legacy PyTorchJob (kubeflow.org/v1, Training Operator): 1 master + nodes-1 workers."""
    from kubeflow.training.models import (
        KubeflowOrgV1PyTorchJob,
        KubeflowOrgV1PyTorchJobSpec,
        KubeflowOrgV1ReplicaSpec,
        KubeflowOrgV1RunPolicy,
    )
    from kubernetes import client as k8s

    volumes, mounts = _volumes(spec)

    def template() -> k8s.V1PodTemplateSpec:
        container = k8s.V1Container(
            name="pytorch",  # the Training Operator finds the training container by this name
            image=spec.image,
            command=_command(spec),
            env=_env(spec) or None,
            resources=_resources(spec) or None,
            volume_mounts=mounts or None,
        )
        return k8s.V1PodTemplateSpec(
            spec=k8s.V1PodSpec(
                containers=[container],
                node_selector=spec.node_selector or None,
                tolerations=spec.tolerations or None,
                volumes=volumes or None,
                service_account_name=spec.service_account or None,
            )
        )

    replicas = {"Master": KubeflowOrgV1ReplicaSpec(replicas=1, restart_policy="Never", template=template())}
    if spec.nodes > 1:
        replicas["Worker"] = KubeflowOrgV1ReplicaSpec(
            replicas=spec.nodes - 1, restart_policy="Never", template=template()
        )
    job = KubeflowOrgV1PyTorchJob(
        api_version=f"{PYTORCHJOB[0]}/{PYTORCHJOB[1]}",
        kind=PYTORCHJOB[3],
        metadata=k8s.V1ObjectMeta(name=spec.name, namespace=spec.namespace, labels=_labels(spec)),
        spec=KubeflowOrgV1PyTorchJobSpec(
            nproc_per_node=str(max(spec.gpus_per_node, 1)),
            pytorch_replica_specs=replicas,
            run_policy=KubeflowOrgV1RunPolicy(clean_pod_policy="None", backoff_limit=0),
        ),
    )
    return k8s.ApiClient().sanitize_for_serialization(job)


def manifest(spec: JobSpec, schema: str = "") -> dict[str, Any]:
    if spec.backend == "trainjob":
        return trainjob_manifest(spec, schema or spec.trainjob_schema or TRAINJOB_SCHEMAS[0])
    if spec.backend == "pytorchjob":
        return pytorchjob_manifest(spec)
    raise UserError(unknown_backend(spec.backend))


def unknown_backend(backend: str) -> Problem:
    return Problem(where="training_backend", rule="backend", field="training_backend",
                   message=f"unknown backend {backend!r}", fix=f"use one of {', '.join(BACKENDS)}")  # fmt: skip


def node0_selector(spec: JobSpec) -> str:
    """The label selector of node 0's pod."""
    if spec.backend == "trainjob":  # a TrainJob runs as a JobSet of the same name
        return (
            f"jobset.sigs.k8s.io/jobset-name={spec.name},jobset.sigs.k8s.io/replicatedjob-name=node,"
            "batch.kubernetes.io/job-completion-index=0"
        )
    return (
        f"training.kubeflow.org/job-name={spec.name},training.kubeflow.org/replica-type=master,"
        "training.kubeflow.org/replica-index=0"
    )


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
                pods = self.core.list_namespaced_pod(self.spec.namespace, label_selector=node0_selector(self.spec))
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
        emit(f"{kind} {spec.namespace}/{spec.name}: submitted ({spec.nodes} node(s) x {spec.gpus_per_node} GPU(s))")
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
                    raise JobFailed(f"{kind} {spec.name} failed: Unschedulable for {spec.unschedulable_s:g}s: {reason}")
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
    schemas = [spec.trainjob_schema] if spec.trainjob_schema or spec.backend != "trainjob" else list(TRAINJOB_SCHEMAS)
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
            if schema != schemas[-1] and all(f == own or f.startswith((own + ".", own + "[")) for f in unknown):
                emit(f"{kind}: this cluster's schema has no {own}; trying spec.{schemas[schemas.index(schema) + 1]}")
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
        custom.create_namespaced_custom_object(group, version, namespace, plural, body, field_validation="Strict")
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


SERVICE_ACCOUNT_ENV = "LABPIPE_SERVICE_ACCOUNT"  # set on the SFT task from the downward API (spec.serviceAccountName)


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
