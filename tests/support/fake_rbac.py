"""Kubernetes authentication and RBAC for the fake Kubernetes API (tests/support/fake_kube.py): the routes
OpenShift AI's MLflow authorization plugin calls, answered from the RBAC objects of manifests/.

A FAKE, and said so, but as strict as the platform where MLflow depends on it:

- `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`: what mlflow-kubernetes-plugins calls for
  every MLflow request in its default mode, the one the mlflow-operator's chart sets
  (`MLFLOW_K8S_AUTH_AUTHORIZATION_MODE=self_subject_access_review`; opendatahub-io/mlflow-operator main,
  charts/mlflow/templates/deployment.yaml; the plugin: opendatahub-io/mlflow-kubernetes-plugins,
  mlflow_kubernetes_plugins/auth/authorizer.py, `_submit_self_subject_access_review`). The caller is the
  bearer token of the request: an unknown or missing token is 401 (the API server's authenticator), a known
  one is the service account it was issued to. `status.allowed` is the RBAC verdict.
- `GET /api/v1/namespaces` (list, and `watch=true` held open without events): the plugin's workspace
  provider (`--workspace-store-uri kubernetes://`) maps namespaces to MLflow workspaces
  (workspace_plugin/caches.py, NamespaceCache).
- `GET /apis/mlflow.kubeflow.org/v1/mlflowconfigs`: 404, the MLflowConfig CRD is not installed (the plugin
  treats it as optional: MlflowConfigCache._refresh_full).

RBAC is evaluated like kubernetes/kubernetes plugin/pkg/auth/authorizer/rbac/rbac.go (release-1.30):
a RoleBinding grants its Role's or ClusterRole's rules in its own namespace, a ClusterRoleBinding everywhere;
a ServiceAccount subject without a namespace is in the binding's namespace (`appliesToUser`); a rule matches
on apiGroups, resources (`resource/subresource`), verbs and resourceNames, with `*` wildcards
(plugin/pkg/auth/authorizer/rbac/rbac.go `RuleAllows`, pkg/apis/rbac/v1/evaluation_helpers.go).
Service accounts are in the groups `system:serviceaccounts`, `system:serviceaccounts:<ns>` and
`system:authenticated`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
SSAR = re.compile(r"^/apis/authorization\.k8s\.io/v1/selfsubjectaccessreviews$")
NAMESPACES = re.compile(r"^/api/v1/namespaces$")
MLFLOWCONFIGS = re.compile(r"^/apis/mlflow\.kubeflow\.org/[^/]+/mlflowconfigs$")
RBAC_KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")


def render(folder: Path) -> list[dict]:
    """`kubectl kustomize folder` (kustomize built into kubectl), as the objects `oc apply -k` would create."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) is needed to render manifests/"
    out = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@dataclass
class User:
    name: str
    groups: tuple[str, ...]

    @classmethod
    def service_account(cls, namespace: str, name: str) -> User:
        return cls(
            f"system:serviceaccount:{namespace}:{name}",
            ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
        )


def _matches(values: list[str] | None, wanted: str) -> bool:
    return bool(values) and ("*" in values or wanted in values)


def rule_allows(rule: dict, group: str, resource: str, subresource: str, verb: str, name: str) -> bool:
    """RBAC's RuleAllows for a resource request."""
    combined = f"{resource}/{subresource}" if subresource else resource
    resources = rule.get("resources") or []
    resource_ok = (
        "*" in resources or combined in resources or (bool(subresource) and f"*/{subresource}" in resources)
    )
    names = rule.get("resourceNames") or []
    return (
        _matches(rule.get("verbs"), verb)
        and _matches(rule.get("apiGroups"), group)
        and resource_ok
        and (not names or name in names)
    )


@dataclass
class Rbac:
    """The cluster's RBAC objects (each with metadata.namespace set for namespaced kinds) and issued tokens."""

    objects: list[dict] = field(default_factory=list)
    tokens: dict[str, User] = field(default_factory=dict)  # bearer token -> the identity it authenticates
    namespaces: set[str] = field(default_factory=set)
    reviews: list[dict] = field(default_factory=list)  # every access review answered: spec + user + allowed
    lock: threading.Lock = field(default_factory=threading.Lock)

    def apply(self, objects: list[dict], namespace: str) -> None:
        """`oc apply -n namespace` of rendered manifests: the RBAC kinds are kept, namespaced ones put there."""
        self.namespaces.add(namespace)
        for obj in objects:
            if obj.get("kind") not in RBAC_KINDS:
                continue
            obj = {**obj, "metadata": dict(obj["metadata"])}
            if obj["kind"] in ("Role", "RoleBinding"):
                obj["metadata"].setdefault("namespace", namespace)
            self.objects.append(obj)

    def issue_token(self, token: str, namespace: str, service_account: str) -> None:
        self.namespaces.add(namespace)
        self.tokens[token] = User.service_account(namespace, service_account)

    def _role_rules(self, ref: dict, namespace: str) -> list[dict]:
        for obj in self.objects:
            if (
                obj["kind"] == ref["kind"]
                and obj["metadata"]["name"] == ref["name"]
                and (ref["kind"] == "ClusterRole" or obj["metadata"].get("namespace") == namespace)
            ):
                return obj.get("rules") or []
        return []  # a binding to a role that does not exist grants nothing

    @staticmethod
    def _applies(subject: dict, user: User, binding_namespace: str) -> bool:
        kind = subject.get("kind")
        if kind == "User":
            return subject.get("name") == user.name
        if kind == "Group":
            return subject.get("name") in user.groups
        if kind == "ServiceAccount":
            namespace = subject.get("namespace") or binding_namespace
            return user.name == f"system:serviceaccount:{namespace}:{subject.get('name')}"
        return False

    def allowed(self, user: User, attrs: dict) -> bool:
        namespace = attrs.get("namespace") or ""
        wanted = (
            attrs.get("group") or "",
            attrs.get("resource") or "",
            attrs.get("subresource") or "",
            attrs.get("verb") or "",
            attrs.get("name") or "",
        )
        for binding in self.objects:
            if binding["kind"] == "ClusterRoleBinding":
                scope = ""
            elif binding["kind"] == "RoleBinding" and binding["metadata"].get("namespace") == namespace:
                scope = namespace
            else:
                continue
            if not any(self._applies(s, user, scope) for s in binding.get("subjects") or []):
                continue
            if any(rule_allows(rule, *wanted) for rule in self._role_rules(binding["roleRef"], scope)):
                return True
        return False

    # -- the routes (fake_kube calls `handle` first; False = not one of these) ---------------------------

    def handle(self, handler, method: str, path: str, query: dict, body: dict) -> bool:
        if SSAR.match(path) and method == "POST":
            token = (handler.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
            user = self.tokens.get(token)
            if user is None:
                handler._status(401, "Unauthorized", "Unauthorized")
                return True
            attrs = (body.get("spec") or {}).get("resourceAttributes") or {}
            allowed = self.allowed(user, attrs)
            with self.lock:
                self.reviews.append({"user": user.name, **attrs, "allowed": allowed})
            handler.reply(
                201,
                {
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SelfSubjectAccessReview",
                    "metadata": {},
                    "spec": body.get("spec") or {},
                    "status": {"allowed": allowed, **({} if allowed else {"reason": "no RBAC rule"})},
                },
            )
            return True
        if NAMESPACES.match(path) and method == "GET":
            if query.get("watch") in ("true", "1", "True"):
                # no namespace changes during a test: hold the watch open (bounded), then end it without events
                threading.Event().wait(min(float(query.get("timeoutSeconds") or 60), 60))
                try:
                    handler.reply(200, "", content_type="application/json")
                except OSError:  # the MLflow server stopped watching (it was shut down)
                    pass
                return True
            items = [{"metadata": {"name": n, "resourceVersion": "1"}} for n in sorted(self.namespaces)]
            handler.reply(
                200,
                {
                    "kind": "NamespaceList",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": "1"},
                    "items": items,
                },
            )
            return True
        if MLFLOWCONFIGS.match(path):
            handler._status(404, "NotFound", "the server could not find the requested resource")
            return True
        return False
