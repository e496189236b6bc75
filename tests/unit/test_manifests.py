"""manifests/: every kustomization renders (`kubectl kustomize`, the kustomize built into kubectl), every core
object validates strictly offline against the Kubernetes schema (kubernetes-validate), and every custom
resource (DSPA, KServe ServingRuntime/InferenceService, ...) against its real CRD schema from
../shared/data/crds, strictly (unknown fields are errors)."""

from __future__ import annotations

import copy
import shutil
import subprocess
from functools import cache
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.support import crds

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
K8S_VERSION = "1.30.0"
KUSTOMIZATIONS = sorted(p.parent for p in MANIFESTS.rglob("kustomization.yaml"))


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
