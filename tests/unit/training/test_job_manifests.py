"""The TrainJob and PyTorchJob that the SFT task submits validate against the real CRD schemas
(../shared/data/crds, see its SOURCE.md), strictly: an unknown field anywhere in the spec fails. The TrainJob
against both TrainJob CRDs: OpenShift AI 3.4-3.5's (opendatahub-io/trainer release/odh-3.5.0,
podTemplateOverrides) and upstream's (kubeflow/trainer master, runtimePatches)."""

from __future__ import annotations

import copy

import jsonschema
import pytest
import yaml

from labpipe.training import jobs
from labpipe.training.launch import launch_plan


def _strict(schema):
    """Reject unknown fields wherever the schema lists properties (a plain validator ignores them)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                if not node.get("x-kubernetes-preserve-unknown-fields"):
                    node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


TRAINJOB_CRDS = {"podTemplateOverrides": "odh-3.5/trainer.kubeflow.org_trainjobs.yaml",
                 "runtimePatches": "trainer.kubeflow.org_trainjobs.yaml"}  # fmt: skip


def _validator(shared_data, filename, version):
    crd = yaml.safe_load((shared_data / "crds" / filename).read_text())
    (ver,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = _strict(ver["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta is the API server's, not the CRD's
    return jsonschema.Draft7Validator(schema)


def _spec(backend, **kw):
    return jobs.JobSpec(
        name=jobs.job_name("run-1", "knowledge"), namespace="lab", image="quay.io/labpipe/labpipe-training:0.1.0",
        train_argv=["--phase", "knowledge", "--model", "s3://b/base", "--data", "s3://b/data.jsonl",
                    "--out", "s3://b/out", "--checkpoint-dir", "s3://b/ckpt"],
        nodes=2, gpus_per_node=8, backend=backend, node_selector={"nvidia.com/gpu.product": "H100"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        s3_secret="labpipe-s3", ca_bundle="labpipe-ca", env={"LABPIPE_RUN_ID": "run-1"},
        memory="200Gi", cpu="16", trusted_ca="odh-trusted-ca-bundle", service_account="pipeline-runner-labpipe",
        queue_name="gpu-queue", **kw,
    )  # fmt: skip


def _pod_settings(body, schema):
    if schema == "podTemplateOverrides":
        (override,) = body["spec"]["podTemplateOverrides"]
        assert override["targetJobs"] == [{"name": "node"}]
        return override["spec"]
    pod = body["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    return pod["template"]["spec"]["template"]["spec"]


@pytest.mark.parametrize("schema", ["podTemplateOverrides", "runtimePatches"])
def test_trainjob_validates_against_the_crd(shared_data, schema):
    body = jobs.manifest(_spec("trainjob"), schema)
    errors = list(_validator(shared_data, TRAINJOB_CRDS[schema], "v1alpha1").iter_errors(body))
    assert not errors, [e.message for e in errors]
    assert body["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and body["kind"] == "TrainJob"
    assert body["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    spec = body["spec"]
    assert spec["runtimeRef"] == {"name": "torch-distributed", "kind": "ClusterTrainingRuntime",
                                  "apiGroup": "trainer.kubeflow.org"}  # fmt: skip
    assert spec["trainer"]["numNodes"] == 2 and spec["trainer"]["numProcPerNode"] == 8
    assert spec["trainer"]["command"][:2] == ["labpipe", "train"]
    assert spec["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    env = {e["name"]: e for e in spec["trainer"]["env"]}
    assert env["AWS_ENDPOINT_URL"]["valueFrom"]["secretKeyRef"] == {"name": "labpipe-s3", "key": "AWS_S3_ENDPOINT",
                                                                    "optional": True}  # fmt: skip
    assert env["LABPIPE_CA_BUNDLE"]["value"].split(":") == [
        "/etc/labpipe/ca/ca.crt", "/etc/labpipe/odh-ca/ca-bundle.crt", "/etc/labpipe/odh-ca/odh-ca-bundle.crt"]
    assert env["HTTPS_PROXY"]["valueFrom"]["configMapKeyRef"] == {"name": "labpipe-network", "key": "HTTPS_PROXY",
                                                                  "optional": True}
    assert env["MLFLOW_TRACKING_AUTH"]["valueFrom"]["secretKeyRef"]["name"] == "labpipe-mlflow"
    pod = _pod_settings(body, schema)
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "H100"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["serviceAccountName"] == "pipeline-runner-labpipe"  # not the namespace's default
    assert pod["volumes"] == [{"name": "ca-bundle", "secret": {"secretName": "labpipe-ca", "optional": True}},
                              {"name": "trusted-ca", "configMap": {"name": "odh-trusted-ca-bundle", "optional": True}}]
    assert pod["containers"] == [{"name": "node", "volumeMounts": [
        {"name": "ca-bundle", "mountPath": jobs.CA_MOUNT, "readOnly": True},
        {"name": "trusted-ca", "mountPath": jobs.TRUSTED_CA_MOUNT, "readOnly": True}]}]  # fmt: skip
    assert ({"podTemplateOverrides", "runtimePatches"} - {schema}).isdisjoint(spec)


@pytest.mark.parametrize("schema", ["podTemplateOverrides", "runtimePatches"])
def test_each_trainjob_shape_is_unknown_to_the_other_crd(shared_data, schema):
    """Why the shape matters: each CRD lacks the other's field, which an API server would prune in silence."""
    other = ({"podTemplateOverrides", "runtimePatches"} - {schema}).pop()
    body = jobs.manifest(_spec("trainjob"), schema)
    errors = list(_validator(shared_data, TRAINJOB_CRDS[other], "v1alpha1").iter_errors(body))
    assert any(schema in e.message for e in errors), [e.message for e in errors]


def test_pytorchjob_validates_against_the_crd(shared_data):
    body = jobs.manifest(_spec("pytorchjob"))
    errors = list(_validator(shared_data, "kubeflow.org_pytorchjobs.yaml", "v1").iter_errors(body))
    assert not errors, [e.message for e in errors]
    replicas = body["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 1
    container = replicas["Worker"]["template"]["spec"]["containers"][0]
    assert container["name"] == "pytorch" and container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert replicas["Worker"]["template"]["spec"]["serviceAccountName"] == "pipeline-runner-labpipe"
    assert body["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert body["spec"]["nprocPerNode"] == "8"


def test_strict_validation_catches_an_unknown_field(shared_data):
    body = jobs.manifest(_spec("trainjob"), "runtimePatches")
    body["spec"]["trainer"]["numGPUs"] = 8
    errors = list(_validator(shared_data, "trainer.kubeflow.org_trainjobs.yaml", "v1alpha1").iter_errors(body))
    assert any("numGPUs" in e.message for e in errors)


def test_a_job_without_cluster_extras_stays_minimal(shared_data):
    spec = jobs.JobSpec(name="labpipe-skills-x", namespace="lab", image="img", train_argv=["--phase", "skills"],
                        nodes=3, gpus_per_node=0)  # fmt: skip
    body = jobs.manifest(spec)
    assert "runtimePatches" not in body["spec"] and "podTemplateOverrides" not in body["spec"]
    # only the optional cluster-wide settings every task gets (proxy ConfigMap, MLflow secret)
    assert {e["name"] for e in body["spec"]["trainer"]["env"]} == {*jobs.PROXY_KEYS, *jobs.MLFLOW_KEYS}
    assert all(e["valueFrom"][next(iter(e["valueFrom"]))]["optional"] for e in body["spec"]["trainer"]["env"])
    assert not list(_validator(shared_data, "trainer.kubeflow.org_trainjobs.yaml", "v1alpha1").iter_errors(body))


def test_job_names_are_dns_labels_and_stable():
    name = jobs.job_name("4f1c2e0a-1b2c-4d5e-8f90-123456789abc", "knowledge")
    assert name == jobs.job_name("4f1c2e0a-1b2c-4d5e-8f90-123456789abc", "knowledge")
    assert len(name) <= 40 and name.replace("-", "").isalnum() and name == name.lower()
    assert name != jobs.job_name("4f1c2e0a-1b2c-4d5e-8f90-123456789abc", "skills")


def test_unknown_backend_is_a_user_error():
    from labpipe.errors import UserError

    with pytest.raises(UserError, match="unknown backend 'slurm'"):
        jobs.manifest(_spec("slurm"))


def test_launch_plan_reads_the_trainjob_environment():
    env = {"PET_NNODES": "4", "PET_NODE_RANK": "3", "PET_MASTER_ADDR": "job-node-0-0.job", "PET_MASTER_PORT": "29400",
           "PET_NPROC_PER_NODE": "8"}  # fmt: skip
    plan = launch_plan(env=env)
    assert (plan.nnodes, plan.node_rank, plan.nproc_per_node, plan.world_size) == (4, 3, 8, 32)
    assert (plan.master_addr, plan.master_port) == ("job-node-0-0.job", 29400)
    assert launch_plan(2, env={}).world_size == 2 and launch_plan(env={}).world_size == 1


def test_launch_commands_use_torchrun_on_cpu_and_the_fsdp_config_on_gpus():
    from labpipe.training.launch import LaunchPlan, fsdp_config_file, launch_command

    plan = LaunchPlan(nnodes=2, nproc_per_node=8, node_rank=1, master_addr="m", master_port=29400)
    gpu = launch_command(plan, ["--phase", "skills"], gpu=True)
    assert gpu[1:3] == ["-m", "accelerate.commands.launch"] and str(fsdp_config_file()) in gpu
    assert gpu[gpu.index("--num_processes") + 1] == "16" and gpu[gpu.index("--machine_rank") + 1] == "1"
    assert gpu[-5:] == ["-m", "labpipe.cli", "train", "--phase", "skills"]
    cpu = launch_command(plan, ["--phase", "skills"], gpu=False)
    assert cpu[1:3] == ["-m", "torch.distributed.run"] and cpu[cpu.index("--nproc-per-node") + 1] == "8"


@pytest.mark.parametrize("bad", [{"PET_NNODES": "two"}, {"PET_NNODES": "2", "PET_NODE_RANK": "2"}])
def test_an_impossible_layout_is_a_user_error(bad):
    from labpipe.errors import UserError

    with pytest.raises(UserError):
        launch_plan(env=bad)
