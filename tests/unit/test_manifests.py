"""manifests/: every kustomization references files that exist; every core object validates offline."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
K8S_VERSION = "1.30.0"
CRD_KINDS = {"DataSciencePipelinesApplication"}  # not in the bundled schemas; checked by shape below


def _kustomizations():
    return sorted(MANIFESTS.rglob("kustomization.yaml"))


def _objects(kustomization: Path, seen=None):
    seen = seen or set()
    spec = yaml.safe_load(kustomization.read_text())
    for res in spec.get("resources", []):
        path = (kustomization.parent / res).resolve()
        assert path.exists(), f"{kustomization}: resource {res} does not exist"
        if path.is_dir():
            yield from _objects(path / "kustomization.yaml", seen)
        elif path not in seen:
            seen.add(path)
            for doc in yaml.safe_load_all(path.read_text()):
                if doc:
                    yield path, doc


@pytest.mark.parametrize("kustomization", _kustomizations(), ids=lambda p: str(p.parent.relative_to(MANIFESTS)))
def test_kustomization_objects_validate(kustomization):
    objects = list(_objects(kustomization))
    assert objects
    for path, obj in objects:
        if obj["kind"] in CRD_KINDS:
            assert obj["apiVersion"].startswith("datasciencepipelinesapplications.opendatahub.io/")
            assert obj["spec"]["objectStorage"]["externalStorage"]["s3CredentialsSecret"]["secretName"] == "labpipe-s3"
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.relative_to(MANIFESTS)}: {obj['kind']}/{obj['metadata']['name']}: {exc.message}")


def test_pods_run_as_non_root():
    for path in MANIFESTS.rglob("*.yaml"):
        for obj in yaml.safe_load_all(path.read_text()):
            if not obj or obj.get("kind") not in {"Deployment", "CronJob"}:
                continue
            pod = obj["spec"]["template"]["spec"] if obj["kind"] == "Deployment" else \
                obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            for container in pod["containers"]:
                ctx = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
                assert ctx.get("runAsNonRoot") is True, f"{path.name}: {container['name']} may run as root"
