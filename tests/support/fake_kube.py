"""A fake Kubernetes API server on 127.0.0.1 for the training-job lifecycle tests.

A FAKE, and said so: no controller runs the job. It speaks the real REST paths and JSON the `kubernetes` client
uses (custom objects create/get/delete, pod list by label selector, pod log with follow, events by field
selector), keeps the objects in memory, and moves a job to the outcome its scenario names after a few GETs, so
that submit -> watch -> fail/succeed -> delete, a cancelled run and a leftover job can be driven over real HTTP.

Custom resources are treated as a real API server treats them (kubernetes/kubernetes master, apiextensions-
apiserver customresource_handler.go schemaCoercingDecoder and pruning/algorithm.go; apiserver
endpoints/handlers/create.go and rest.go `fieldValidation`): only the CRDs it was started with are served
(`crds`: files or folders, e.g. ../shared/data/crds/odh-3.5 for OpenShift AI 3.4-3.5's Trainer, or upstream's);
on create, fields unknown to the structural schema are pruned, with one `Warning: 299 - "unknown field \"…\""`
header each (fieldValidation=Warn, the server's default), silently (Ignore), or the create is refused with 400
BadRequest "strict decoding error: unknown field …" (Strict, what create.go's transformDecodeError answers);
type/enum/required violations are 422 Invalid. What is stored is the pruned object, as etcd would hold it.
Updates (PUT) behave as for any custom resource with a status subresource: `metadata.generation` starts at 1
and grows when the spec changes, an update needs the current `metadata.resourceVersion` (409 Conflict on a
stale one) and cannot change `status`. InferenceServices get a stand-in for KServe's controller
(`isvc_scenarios`, see `_reconcile_isvc`).
"""

from __future__ import annotations

import json
import re
import threading
from contextlib import contextmanager
from pathlib import Path

from tests.support import crds as crd_schemas
from tests.support.jsonhttp import JsonHandler, Served

CUSTOM = re.compile(r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods$")
LOG = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<pod>[^/]+)/log$")
EVENTS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/events$")
DONE = {"trainjobs": ("Complete", "Failed"), "pytorchjobs": ("Succeeded", "Failed")}


def shared_crds() -> Path:
    """../shared/data/crds (LABPIPE_SHARED_DATA overrides ../shared/data, as in tests/conftest.py)."""
    import os

    data = os.environ.get("LABPIPE_SHARED_DATA")
    return (Path(data) if data else Path(__file__).resolve().parents[3] / "shared" / "data") / "crds"


def upstream_training_crds() -> list[Path]:
    """Upstream Kubeflow Trainer's TrainJob and the Training Operator's PyTorchJob (the default CRDs)."""
    return [shared_crds() / "trainer.kubeflow.org_trainjobs.yaml", shared_crds() / "kubeflow.org_pytorchjobs.yaml"]


def odh_training_crds() -> list[Path]:
    """OpenShift AI 3.4-3.5's TrainJob (release/odh-3.5.0: podTemplateOverrides, no runtimePatches)."""
    return [shared_crds() / "odh-3.5" / "trainer.kubeflow.org_trainjobs.yaml",
            shared_crds() / "kubeflow.org_pytorchjobs.yaml"]  # fmt: skip


class FakeKube:
    def __init__(self, crds: list[Path] | None = None):
        if isinstance(crds, (str, Path)):
            crds = [crds]
        self.crds = [str(p) for p in (upstream_training_crds() if crds is None else crds)]
        self.resource_version = 0
        # InferenceService name -> {"outcome": "ready" | "fail", "after": GETs of a generation before KServe's
        # status for it, "url": the address KServe reports (the test's OpenAI server), "reason", "message"}
        self.isvc_scenarios: dict[str, dict] = {}
        self.warnings: list[str] = []  # every Warning header sent (pruned fields)
        self.created: list[dict] = []  # every custom resource stored, as stored (after pruning)
        # scenario "unschedulable": the job's pods stay Pending and the scheduler's FailedScheduling event says why
        self.events: list[dict] = []
        self.objects: dict[tuple[str, str, str], dict] = {}  # (plural, ns, name) -> object
        self.gets: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        self.queries: list[tuple[str, str]] = []  # (method, query string) of each request
        self.deleted: list[str] = []
        # name -> {"outcome": "succeed" | "fail" | "run", "after": GETs before the outcome, "reason", "message"}
        self.scenarios: dict[str, dict] = {}
        self.log_lines = ["step 1 loss 6.37", "step 2 loss 6.22", "training done"]
        self.lock = threading.Lock()
        # Set `runner` to play the Trainer controller for TrainJobs: each node runs the job's command as a local
        # process with the PET_* variables of the torch runtime, env from `runner["env"]` and `secrets`.
        self.runner: dict | None = None
        self.secrets: dict[str, dict[str, str]] = {}
        self.node_logs: dict[str, Path] = {}
        self.procs: dict[str, list] = {}
        # Extra routes tried before the ones below: objects with `handle(handler, method, path, query, body)`
        # returning True when they answered (tests/support/fake_rbac.py: access reviews, namespaces).
        self.routes: list = []

    def start_nodes(self, job: dict) -> None:
        import os
        import subprocess
        import sys

        name, trainer = job["metadata"]["name"], job["spec"]["trainer"]
        # a pod gets only what the job spec gives it: no S3 credentials from the test process
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | self.runner.get("env", {})
        for var in trainer.get("env") or []:
            if "value" in var:
                env[var["name"]] = var["value"]
            else:  # a secret's key, or a ConfigMap's (this fake holds ConfigMaps in `secrets` too)
                source = var["valueFrom"]
                ref = source.get("secretKeyRef") or source["configMapKeyRef"]
                if ref["key"] in self.secrets.get(ref["name"], {}):
                    env[var["name"]] = self.secrets[ref["name"]][ref["key"]]
                elif not ref.get("optional"):
                    raise KeyError(f"{ref['name']}/{ref['key']} is missing and not optional: the pod cannot start")
        command = trainer["command"]
        if command[0] == "labpipe":
            command = [sys.executable, "-m", "labpipe.cli", *command[1:]]
        nodes, port = trainer["numNodes"], str(self.runner["port"])
        procs = []
        for rank in range(nodes):
            log = Path(self.runner["workdir"]) / f"{name}-node-{rank}.log"
            pet = {"PET_NNODES": str(nodes), "PET_NODE_RANK": str(rank), "PET_MASTER_ADDR": "127.0.0.1",
                   "PET_MASTER_PORT": port, "PET_NPROC_PER_NODE": str(trainer.get("numProcPerNode", 1))}  # fmt: skip
            node_env = {**env, **pet, "LABPIPE_CACHE": str(Path(self.runner["workdir"]) / f"node-{rank}-cache")}
            procs.append(subprocess.Popen(command, env=node_env, stdout=log.open("w"), stderr=subprocess.STDOUT))
            if rank == 0:
                self.node_logs[name] = log
        self.procs[name] = procs

        def watch():
            codes = [p.wait() for p in procs]
            bad = [(r, c) for r, c in enumerate(codes) if c]
            cond = ({"type": "Failed", "status": "True", "reason": "NodeFailed",
                     "message": f"node {bad[0][0]} exited with code {bad[0][1]}"} if bad else
                    {"type": "Complete", "status": "True", "reason": "JobSucceeded", "message": ""})  # fmt: skip
            with self.lock:
                job["status"] = {"conditions": [cond]}

        threading.Thread(target=watch, daemon=True).start()


class _Handler(JsonHandler):
    fake: FakeKube

    def _status(self, status: int, reason: str, message: str):
        self.reply(status, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                            "message": message, "code": status})  # fmt: skip

    def _admit(self, kind: str, schema: dict, m, query: dict, body: dict):
        """The API server's decoding of a custom resource on create or update: (reply args, None) when refused,
        else (None, the Warning texts); prunes `body` in place."""
        directive = query.get("fieldValidation") or "Warn"  # rest.go fieldValidation: "" means Warn
        pruned = crd_schemas.prune(body, schema)
        if pruned and directive == "Strict":
            unknown = ", ".join(f'unknown field "{path}"' for path in pruned)
            return (400, "BadRequest", f'{kind} in version "{m["version"]}" cannot be handled as a {kind}: '
                                       f"strict decoding error: {unknown}"), None  # fmt: skip
        errors = crd_schemas.schema_errors({k: v for k, v in body.items() if k != "status"}, schema)
        if errors:
            return (422, "Invalid", f'{kind}.{m["group"]} "{body["metadata"].get("name")}" is invalid: '
                                    f"{'; '.join(errors)}"), None  # fmt: skip
        return None, [f'unknown field "{path}"' for path in pruned] if directive == "Warn" else []

    def handle_request(self, method: str, path: str, query: dict, body: dict):
        fake = self.fake
        with fake.lock:
            fake.requests.append((method, path))
            fake.queries.append((method, "&".join(f"{k}={v}" for k, v in query.items())))
        if any(route.handle(self, method, path, query, body) for route in fake.routes):
            return
        m = CUSTOM.match(path)
        # a custom resource of an installed CRD (other namespaced /apis/ paths fall through to the routes below,
        # and end in 404 NotFound like a resource the server does not serve)
        served = m and crd_schemas.resource(fake.crds, f"{m['group']}/{m['version']}", m["plural"])
        if served:
            kind, schema = served
            key = (m["plural"], m["ns"], m["name"] or "")
            if method in ("POST", "PUT"):
                refused, warnings = self._admit(kind, schema, m, query, body)
                if refused:
                    return self._status(*refused)
                with fake.lock:
                    fake.resource_version += 1
                    key = (m["plural"], m["ns"], body["metadata"]["name"])
                    old = fake.objects.get(key)
                    meta = body["metadata"]
                    if method == "POST":
                        if old is not None:
                            return self._status(409, "AlreadyExists", f"{key[2]} already exists")
                        meta.update(generation=1, namespace=m["ns"], uid=f"uid-{fake.resource_version}")
                        body.pop("status", None)
                    else:
                        if old is None:
                            return self._status(404, "NotFound", f"{key[2]} not found")
                        if not meta.get("resourceVersion"):
                            return self._status(422, "Invalid", "metadata.resourceVersion: must be specified for an update")
                        if meta["resourceVersion"] != old["metadata"]["resourceVersion"]:
                            return self._status(409, "Conflict", "the object has been modified; apply your changes "
                                                "to the latest version and try again")  # fmt: skip
                        changed = body.get("spec") != old.get("spec")
                        meta.update(generation=old["metadata"]["generation"] + changed, uid=old["metadata"]["uid"])
                        body["status"] = old.get("status")  # the status subresource: not written by an update
                        if body["status"] is None:
                            body.pop("status")
                    meta["resourceVersion"] = str(fake.resource_version)
                    fake.warnings += warnings
                    fake.objects[key] = body
                    if method == "POST":
                        fake.created.append(json.loads(json.dumps(body)))
                        if fake.runner is not None and m["plural"] == "trainjobs":
                            fake.scenarios[key[2]] = {"outcome": "run"}  # the nodes decide
                            fake.start_nodes(body)
                header = [("Warning", '299 - "' + w.replace('"', '\\"') + '"') for w in warnings]
                return self.reply(201 if method == "POST" else 200, body, headers=header)
            with fake.lock:
                obj = fake.objects.get(key)
            if obj is None:
                return self._status(404, "NotFound", f"{key[2]} not found")
            if method == "DELETE":
                with fake.lock:
                    del fake.objects[key]
                    fake.deleted.append(key[2])
                return self.reply(200, {"kind": "Status", "status": "Success"})
            if m["plural"] == "inferenceservices":
                with fake.lock:
                    _reconcile_isvc(fake, obj)
                return self.reply(200, obj)
            with fake.lock:
                fake.gets[key[2]] = fake.gets.get(key[2], 0) + 1
                scenario = fake.scenarios.get(key[2], {"outcome": "succeed", "after": 2})
                if scenario["outcome"] in ("succeed", "fail") and fake.gets[key[2]] > scenario.get("after", 2):
                    done, failed = DONE[m["plural"]]
                    kind = done if scenario["outcome"] == "succeed" else failed
                    obj["status"] = {"conditions": [{"type": "Created", "status": "True"}, {
                        "type": kind, "status": "True", "reason": scenario.get("reason", ""),
                        "message": scenario.get("message", "")}]}  # fmt: skip
            return self.reply(200, obj)
        if m := PODS.match(path):
            selector = query.get("labelSelector", "")
            labels = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
            job = labels.get("jobset.sigs.k8s.io/jobset-name") or labels.get("training.kubeflow.org/job-name")
            with fake.lock:
                exists = any(k[2] == job for k in fake.objects)
                pending = fake.scenarios.get(job, {}).get("outcome") == "unschedulable"
            status = ({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                                                           "reason": "Unschedulable"}]}
                      if pending else {"phase": "Running"})  # fmt: skip
            items = [{"metadata": {"name": f"{job}-node-0-0", "namespace": m["ns"], "labels": labels},
                      "status": status}] if exists else []  # fmt: skip
            return self.reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
        if m := LOG.match(path):
            job = m["pod"].removesuffix("-node-0-0")
            if fake.scenarios.get(job, {}).get("outcome") == "unschedulable":  # what the kubelet-less API says
                return self._status(400, "BadRequest", f'container "node" in pod "{m["pod"]}" is waiting to start: '
                                                       "ContainerCreating")
            if job in fake.procs:  # follow: answer when node 0 has exited, with its whole log
                fake.procs[job][0].wait()
                return self.reply(200, fake.node_logs[job].read_text(), content_type="text/plain")
            return self.reply(200, "\n".join(fake.log_lines) + "\n", content_type="text/plain")
        if m := EVENTS.match(path):
            wanted = dict(p.split("=", 1) for p in query.get("fieldSelector", "").split(",") if "=" in p)
            with fake.lock:
                items = [e for e in fake.events if e["metadata"].get("namespace", m["ns"]) == m["ns"] and all(
                    e["involvedObject"].get(k.removeprefix("involvedObject.")) == v for k, v in wanted.items())]
            return self.reply(200, {"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": items})
        return self._status(404, "NotFound", path)


def _reconcile_isvc(fake: FakeKube, obj: dict) -> None:
    """KServe's controller, played: after `after` GETs of a generation, the status KServe writes for it.

    As kserve/kserve (master, pkg/apis/serving/v1beta1/inference_service_status.go) has it: Ready is the
    living set of PredictorReady and IngressReady; status.observedGeneration names the spec described;
    address.url is the in-cluster URL; modelStatus.lastFailureInfo holds a failed load's reason. A new
    generation that fails keeps the previous ready revision (and its address) serving.
    """
    name, gen = obj["metadata"]["name"], obj["metadata"]["generation"]
    scenario = fake.isvc_scenarios.get(name, {"outcome": "ready"})
    seen = fake.gets[f"isvc:{name}:{gen}"] = fake.gets.get(f"isvc:{name}:{gen}", 0) + 1
    status = obj.get("status") or {}
    if seen <= scenario.get("after", 2) or status.get("observedGeneration") == gen:
        return
    now = "2026-12-07T12:00:00Z"
    revision = f"{name}-predictor-{gen:05d}"
    previous = (status.get("components") or {}).get("predictor") or {}
    if scenario["outcome"] == "ready":
        conds = [{"type": t, "status": "True", "lastTransitionTime": now} for t in ("IngressReady", "PredictorReady",
                                                                                   "Ready")]  # fmt: skip
        obj["status"] = {
            "observedGeneration": gen, "conditions": conds, "url": f"https://{name}-lab.apps.example.test",
            "address": {"url": scenario["url"]}, "deploymentMode": "Serverless",
            "components": {"predictor": {"latestReadyRevision": revision, "latestCreatedRevision": revision}},
            "modelStatus": {"transitionStatus": "UpToDate",
                            "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"}},
        }  # fmt: skip
        return
    reason, message = scenario.get("reason", "RevisionFailed"), scenario.get("message", "")
    failed = {"status": "False", "reason": reason, "message": message, "lastTransitionTime": now}
    obj["status"] = {
        **{k: v for k, v in status.items() if k in ("url", "address", "deploymentMode")},  # the old revision serves
        "observedGeneration": gen,
        "conditions": [{"type": "IngressReady", "status": "True", "lastTransitionTime": now},
                       {"type": "PredictorReady", **failed}, {"type": "Ready", **failed}],
        "components": {"predictor": {**previous, "latestCreatedRevision": revision}},
        "modelStatus": {"transitionStatus": "BlockedByFailedLoad",
                        "states": {"activeModelState": "Loaded" if previous else "FailedToLoad",
                                   "targetModelState": "FailedToLoad"},
                        "lastFailureInfo": {"reason": "ModelLoadFailed", "message": message}},
    }  # fmt: skip


@contextmanager
def fake_kube_server(workdir: Path, crds: list[Path] | str | Path | None = None):
    """Yields (FakeKube, kubeconfig path) for a server on 127.0.0.1 serving `crds` (files or folders; default: upstream's
    TrainJob and PyTorchJob); stops it afterwards."""
    fake = FakeKube(crds)
    handler = type("Handler", (_Handler,), {"fake": fake})
    with Served(handler) as served:
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": served.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "lab"}}],
        }))  # fmt: skip
        yield fake, kubeconfig
