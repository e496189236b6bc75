"""OpenShift AI's MLflow, offline: a real `mlflow server` with the platform's authorization plugin
(mlflow-kubernetes-plugins, PyPI 2.1.0, made for MLflow 3.17), started the way the mlflow-operator's chart
starts it (opendatahub-io/mlflow-operator main, charts/mlflow/templates/deployment.yaml):

    mlflow server --app-name=kubernetes-auth --enable-workspaces --workspace-store-uri=kubernetes://
    MLFLOW_K8S_AUTH_AUTHORIZATION_MODE=self_subject_access_review

Its Kubernetes API is the fake one (tests/support/fake_kube.py with the routes of fake_rbac.py): every
MLflow request is authorized by a SelfSubjectAccessReview made with the caller's bearer token, answered
from the RBAC in manifests/ (applied to NAMESPACE as `oc apply -k manifests/overlays/openshift-ai` would),
and workspaces are the fake's namespaces. So a request without the token is 401, one without the workspace
header has no workspace (the plugin's provider has no default one), and a service account without the
Role `labpipe-mlflow` is 403.

The plugin declares Python >= 3.12; its code runs unchanged on 3.11 (scripts/setup-env.sh installs it with
--ignore-requires-python, no dependencies: mlflow 3.17, kubernetes and graphql-core are already there).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.fake_kube import FakeKube, fake_kube_server
from tests.support.fake_rbac import MANIFESTS, Rbac, render
from tests.support.servers import mlflow_server

NAMESPACE = "labpipe"  # the project: also the MLflow workspace
PIPELINE_SA = "pipeline-runner-labpipe"  # the DSPA's pipeline service account (bound in manifests/base)
PIPELINE_TOKEN = "token-of-pipeline-runner-labpipe"
OTHER_SA = "default"  # a service account of the same project that labpipe's RBAC does not name
OTHER_TOKEN = "token-of-default"


@dataclass
class PlatformMlflow:
    url: str
    kube: FakeKube
    rbac: Rbac
    workdir: Path

    def service_account_files(self, token: str, namespace: str = NAMESPACE) -> Path:
        """A pod's /var/run/secrets/kubernetes.io/serviceaccount: `token` and `namespace` files, what MLflow's
        kubernetes(-namespaced) auth provider reads."""
        folder = self.workdir / f"sa-{token}-{namespace}"
        folder.mkdir(exist_ok=True)
        (folder / "token").write_text(token + "\n")
        (folder / "namespace").write_text(namespace + "\n")
        return folder


@contextmanager
def platform_mlflow(
    workdir: Path, manifests: Path = MANIFESTS / "overlays" / "openshift-ai"
) -> Iterator[PlatformMlflow]:
    """The plugin-protected MLflow server and its fake Kubernetes API; NAMESPACE holds `manifests`' RBAC and
    two service-account tokens: PIPELINE_TOKEN (bound by manifests/) and OTHER_TOKEN (not bound)."""
    workdir.mkdir(parents=True, exist_ok=True)
    rbac = Rbac()
    rbac.apply(render(manifests), NAMESPACE)
    rbac.issue_token(PIPELINE_TOKEN, NAMESPACE, PIPELINE_SA)
    rbac.issue_token(OTHER_TOKEN, NAMESPACE, OTHER_SA)
    with fake_kube_server(workdir) as (kube, server_kubeconfig):
        kube.routes.append(rbac)
        env = {
            "KUBECONFIG": str(server_kubeconfig),
            "MLFLOW_K8S_AUTH_AUTHORIZATION_MODE": "self_subject_access_review",
            "MLFLOW_K8S_AUTH_CACHE_TTL_SECONDS": "1",
        }  # RBAC changes in a test are seen at once
        args = (
            "--enable-workspaces",
            "--workspace-store-uri",
            "kubernetes://",
            "--app-name",
            "kubernetes-auth",
        )
        with mlflow_server(workdir, extra_args=args, env=env) as url:
            # MLflow's client gives /server-info 3 s; its first answer after start-up is slow on a loaded machine
            httpx.get(f"{url}/api/3.0/mlflow/server-info", timeout=120).raise_for_status()
            yield PlatformMlflow(url, kube, rbac, workdir)
