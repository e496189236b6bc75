"""manifests/: every kustomization renders (`kubectl kustomize`, the kustomize built into kubectl), every core
object validates strictly offline against the Kubernetes schema (kubernetes-validate), and every custom
resource (DSPA, KServe ServingRuntime/InferenceService, ...) against its real CRD schema from
../shared/data/crds, strictly (unknown fields are errors)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.support import crds

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
REPO_DOCS = Path(__file__).resolve().parents[2] / "docs"
K8S_VERSION = "1.30.0"
KUSTOMIZATIONS = sorted(p.parent for p in MANIFESTS.rglob("kustomization.yaml")
                        if yaml.safe_load(p.read_text()).get("kind") != "Component")  # components render in overlays


def _render(folder: Path) -> list[dict]:
    return copy.deepcopy(_rendered(folder))


@cache
def _rendered(folder: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) is needed to render manifests/"
    out = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, f"kustomize {folder.relative_to(MANIFESTS)} failed: {out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module")
def crd_dir(shared_data):
    return shared_data / "crds"


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_kustomization_renders_and_validates(folder, crd_dir):
    objects = _render(folder)
    assert objects
    for obj in objects:
        name = f"{folder.relative_to(MANIFESTS)}: {obj['kind']}/{obj['metadata']['name']}"
        if "." in obj["apiVersion"].split("/")[0] and not obj["apiVersion"].startswith(
                ("rbac.authorization.k8s.io", "batch", "apps")):
            assert crds.known(crd_dir, obj), f"{name}: no CRD schema for {obj['apiVersion']}"
            problems = crds.validate(crd_dir, obj)
            assert not problems, f"{name}: " + "; ".join(problems)
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {exc.message}")


def test_crd_validation_catches_mistakes(crd_dir):
    """The CRD check is not a formality: a misspelled field and a wrong type are both reported."""
    isvc = next(o for o in _render(MANIFESTS / "serving") if o["kind"] == "InferenceService")
    isvc["spec"]["predictor"]["model"]["storgeUri"] = "s3://x"
    isvc["spec"]["predictor"]["minReplicas"] = "one"
    problems = " ".join(crds.validate(crd_dir, isvc))
    assert "storgeUri: unknown field" in problems and "minReplicas" in problems


def test_every_object_is_labelled_and_secrets_are_templates():
    for folder in KUSTOMIZATIONS:
        for obj in _render(folder):
            assert obj["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "labpipe", obj["metadata"]
            if obj["kind"] == "Secret":
                values = " ".join(str(v) for v in obj.get("stringData", {}).values())
                assert "REPLACE_ME" in values or not values.strip(), f"{obj['metadata']['name']} holds a real value?"


def test_secret_templates_cover_every_secret_the_pipeline_and_rbac_name():
    secrets = {o["metadata"]["name"] for o in _render(MANIFESTS / "secrets") if o["kind"] == "Secret"}
    role = next(o for o in _render(MANIFESTS / "base") if o["metadata"]["name"] == "labpipe-secrets-reader"
                and o["kind"] == "Role")
    assert set(role["rules"][0]["resourceNames"]) == secrets
    assert {"labpipe-teacher", "labpipe-judge", "labpipe-s3", "labpipe-taxonomy-git", "labpipe-ca", "labpipe-mlflow"} <= secrets


def test_pipeline_service_accounts_may_run_training_jobs():
    objs = _render(MANIFESTS / "overlays" / "openshift-ai")
    role = next(o for o in objs if o["kind"] == "Role" and o["metadata"]["name"] == "labpipe-training-jobs")
    granted = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"]
               for r in rule["resources"]}
    for resource in (("trainer.kubeflow.org", "trainjobs"), ("kubeflow.org", "pytorchjobs")):
        assert {"create", "get", "watch", "delete"} <= granted[resource], resource
    assert "get" in granted[("", "pods/log")]
    binding = next(o for o in objs if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "labpipe-training-jobs")
    assert {"pipeline-runner-labpipe", "labpipe-runner"} <= {s["name"] for s in binding["subjects"]}


def test_pipeline_service_accounts_may_hand_the_model_to_kserve():
    """serve=NAME: the publish task gets, creates and replaces the InferenceService (evaluation/serving.py)."""
    from labpipe.evaluation.serving import GROUP, PLURAL

    objs = _render(MANIFESTS / "overlays" / "openshift-ai")
    role = next(o for o in objs if o["kind"] == "Role" and o["metadata"]["name"] == "labpipe-serving")
    granted = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"]
               for r in rule["resources"]}
    assert {"get", "create", "update"} <= granted[(GROUP, PLURAL)]
    binding = next(o for o in objs if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "labpipe-serving")
    assert {"pipeline-runner-labpipe", "labpipe-runner"} <= {s["name"] for s in binding["subjects"]}


def test_pods_run_as_non_root():
    for folder in KUSTOMIZATIONS:
        for obj in _render(folder):
            if obj["kind"] not in {"Deployment", "CronJob"}:
                continue
            pod = obj["spec"]["template"]["spec"] if obj["kind"] == "Deployment" else \
                obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            for container in pod["containers"]:
                ctx = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
                assert ctx.get("runAsNonRoot") is True, f"{folder.name}: {container['name']} may run as root"


# --- the OpenShift AI 3.x walk-through (issue 16): each fact below is read in the platform's public source ---


def _dspa(folder: Path = MANIFESTS / "overlays" / "openshift-ai") -> dict:
    return next(o for o in _render(folder) if o["kind"] == "DataSciencePipelinesApplication")


def test_dspa_sets_the_workspace_pvc_template_the_api_server_requires(crd_dir):
    """opendatahub-io/data-science-pipelines-operator main: the API server refuses workspace runs unless
    spec.apiServer.workspace.volumeClaimTemplateSpec has accessModes and storageClassName (getPVCSpec in the
    backend; the DSPA CRD's x-kubernetes-validations say the same, and crds.validate evaluates them)."""
    dspa = _dspa()
    template = dspa["spec"]["apiServer"]["workspace"]["volumeClaimTemplateSpec"]
    assert template["accessModes"] == ["ReadWriteOnce"] and template["storageClassName"]
    assert not crds.validate(crd_dir, dspa)
    del template["storageClassName"]
    assert any("storageClassName must be provided" in p for p in crds.validate(crd_dir, dspa))


def test_dspa_object_storage_and_storage_class_come_from_params_env(tmp_path, crd_dir):
    """dspa.yaml hard-codes no S3 host, bucket or region: kustomize replacements take them from params.env."""
    assert "example.internal" not in (MANIFESTS / "overlays" / "openshift-ai" / "dspa.yaml").read_text()
    tree = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, tree)
    (tree / "overlays" / "openshift-ai" / "params.env").write_text(
        "S3_HOST=minio.storage.svc:9000\nS3_BUCKET=ml-artifacts\nS3_REGION=eu-west-1\nWORKSPACE_STORAGE_CLASS=ocs-rbd\n")
    dspa = _dspa(tree / "overlays" / "openshift-ai")
    storage = dspa["spec"]["objectStorage"]["externalStorage"]
    assert (storage["host"], storage["bucket"], storage["region"]) == ("minio.storage.svc:9000", "ml-artifacts",
                                                                       "eu-west-1")
    assert dspa["spec"]["apiServer"]["workspace"]["volumeClaimTemplateSpec"]["storageClassName"] == "ocs-rbd"
    assert not crds.validate(crd_dir, dspa)


def test_teacher_and_judge_secrets_name_what_the_serving_manifests_serve():
    """kserve/kserve master (RawDeployment service reconciler): the predictor Service listens on port 80
    (constants.CommonDefaultHttpPort) and forwards to the container port; the runtime serves the model under the
    InferenceService's name (--served-model-name={{.Name}}). The secret templates use exactly those."""
    serving = _render(MANIFESTS / "serving")
    runtime = next(o for o in serving if o["kind"] == "ServingRuntime")
    assert "--served-model-name={{.Name}}" in runtime["spec"]["containers"][0]["args"]
    secrets = {o["metadata"]["name"]: o["stringData"] for o in _render(MANIFESTS / "secrets") if o["kind"] == "Secret"}
    for isvc in (o for o in serving if o["kind"] == "InferenceService"):
        name = isvc["metadata"]["name"]
        secret = secrets[f"labpipe-{name}"]
        assert secret["model"] == name, f"the runtime serves {name!r}; the secret names {secret['model']!r}"
        assert secret["endpoint"] == f"http://{name}-predictor/v1"  # port 80: no :8080
    assert ":8080" not in (REPO_DOCS / "openshift-ai.md").read_text()


def test_vllm_runtime_runs_under_the_restricted_scc_with_shared_memory():
    runtime = next(o for o in _render(MANIFESTS / "serving") if o["kind"] == "ServingRuntime")
    container = runtime["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    for var in ("HOME", "XDG_CACHE_HOME", "HF_HOME"):  # a random UID has HOME=/ (not writable)
        assert env[var].startswith("/tmp/"), var
    [shm] = [v for v in runtime["spec"]["volumes"] if v["name"] == "shm"]
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"name": "shm", "mountPath": "/dev/shm"} in container["volumeMounts"]


def test_s3_secret_is_a_connection_in_the_3x_dashboard():
    """opendatahub-io/architecture-decision-records ODH-ADR-Operator-0009 (Connection API, redefined for 3.0) and
    opendatahub-io/odh-dashboard main (a Secret is a Connection when it has connection-type-protocol or -ref)."""
    s3 = next(o for o in _render(MANIFESTS / "secrets") if o["metadata"]["name"] == "labpipe-s3")
    assert s3["metadata"]["labels"]["opendatahub.io/dashboard"] == "true"
    annotations = s3["metadata"]["annotations"]
    assert annotations["opendatahub.io/connection-type-protocol"] == "s3"
    assert annotations["opendatahub.io/connection-type-ref"] == "s3"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_S3_ENDPOINT", "AWS_S3_BUCKET"} <= set(s3["stringData"])


def test_weekly_cronjob_takes_the_compiled_image_pins_and_the_uploaded_pipeline(tmp_path):
    """The CronJob's image comes from manifests/images (what `labpipe compile` pinned) and it runs the newest
    uploaded pipeline version, not the YAML inside its image."""
    from labpipe.components.images import kustomize_images

    tree = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, tree)
    lock = tmp_path / "images.lock.json"
    digest = "sha256:" + "ab" * 32
    lock.write_text('{"taxonomy": "registry.internal/ml/labpipe-taxonomy@' + digest + '"}')
    (tree / "images" / "kustomization.yaml").write_text(kustomize_images(lock))
    cron = next(o for o in _render(tree / "overlays" / "weekly-cronjob") if o["kind"] == "CronJob")
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"registry.internal/ml/labpipe-taxonomy@{digest}"
    assert "--pipeline-version latest" in " ".join(container["args"])


def test_walk_through_uses_the_3x_field_names_and_one_ca_story():
    """opendatahub-io/opendatahub-operator (3.x DataScienceCluster API): the pipelines component is `aipipelines`;
    the CA is the labpipe-ca secret (key ca.crt) plus the platform's odh-trusted-ca-bundle ConfigMap, everywhere."""
    text = (REPO_DOCS / "openshift-ai.md").read_text()
    assert "aipipelines" in text and "datasciencepipelines.managementState" not in text
    assert "odh-trusted-ca-bundle" in text and "labpipe-ca" in text
    for doc in REPO_DOCS.glob("*.md"):
        body = doc.read_text()
        assert "CA bundle ConfigMap (`ca_bundle`" not in body, doc.name
        assert not re.search(r"labpipe-ca`? (?:is a |)ConfigMap", body), doc.name
