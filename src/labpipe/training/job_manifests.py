"""The multi-node training job's manifests (training/jobs.py submits and follows them): a Kubeflow Trainer v2
TrainJob, in the OpenShift AI shape (`spec.podTemplateOverrides`) or the upstream one (`spec.runtimePatches`),
or a legacy PyTorchJob, built from typed models (`kubeflow-trainer-api`, `kubeflow-training`). Both carry the
same pod settings: node selector, tolerations, CA volumes, the network config's proxies, the MLflow and S3
secrets, the task's service account and the Kueue queue label. jobs.py re-exports every public name here.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
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
    deadline_s: float = (
        0  # the job fails (and is deleted) when it has not ended after this long; 0 = no deadline
    )
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
            {
                "name": var,
                "valueFrom": {"secretKeyRef": {"name": spec.s3_secret, "key": key, "optional": True}},
            }
            for key, var in S3_SECRET_KEYS.items()
        ]
    if ca_bundle_paths(spec):  # labpipe.net adds them to the public roots for S3, MLflow, git and endpoints
        env.append({"name": "LABPIPE_CA_BUNDLE", "value": os.pathsep.join(ca_bundle_paths(spec))})
    env += [
        {"name": k, "valueFrom": {"configMapKeyRef": {"name": NETWORK_CONFIG, "key": k, "optional": True}}}
        for k in PROXY_KEYS
    ]
    env += [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": MLFLOW_SECRET, "key": k, "optional": True}}}
        for k in MLFLOW_KEYS
    ]
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
