"""A fake Kubernetes API server on 127.0.0.1 for the training-job lifecycle tests.

A FAKE, and said so: no controller runs the job. It speaks the real REST paths and JSON the `kubernetes` client
uses (custom objects create/get/delete, pod list by label selector, pod log with follow), keeps the objects
in memory, and moves a job to the outcome its scenario names after a few GETs, so that submit -> watch ->
fail/succeed -> delete, a cancelled run and a leftover job can be driven over real HTTP.

Started with `crd_dir` (../shared/data/crds) it serves every CRD there as the API server does for custom
resources (kubernetes/apiserver, apiextensions-apiserver, release-1.30): the object is checked against the
CRD's structural schema, unknown fields are refused with `fieldValidation=Strict` (422) and pruned otherwise,
`metadata.generation` starts at 1 and grows when the spec changes, an update (PUT) needs the current
`metadata.resourceVersion` (409 Conflict on a stale one) and cannot change `status` (the status subresource).
InferenceServices get a stand-in for KServe's controller (`isvc_scenarios`, see `_reconcile_isvc`).
"""

from __future__ import annotations

import json
import re
import threading
from contextlib import contextmanager
from pathlib import Path

from tests.support import crds
from tests.support.jsonhttp import JsonHandler, Served

CUSTOM = re.compile(r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods$")
LOG = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<pod>[^/]+)/log$")
DONE = {"trainjobs": ("Complete", "Failed"), "pytorchjobs": ("Succeeded", "Failed")}


class FakeKube:
    def __init__(self, crd_dir: str | Path | None = None):
        self.crd_dir = str(crd_dir) if crd_dir else None
        self.resource_version = 0
        # InferenceService name -> {"outcome": "ready" | "fail", "after": GETs of a generation before KServe's
        # status for it, "url": the address KServe reports (the test's OpenAI server), "reason", "message"}
        self.isvc_scenarios: dict[str, dict] = {}
        self.objects: dict[tuple[str, str, str], dict] = {}  # (plural, ns, name) -> object
        self.gets: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
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

    def _admit(self, served: tuple[str, str], query: dict, body: dict):
        """The API server's checks of a custom resource; (None, object to store) or (reply args, None)."""
        fake = self.fake
        if (body.get("apiVersion"), body.get("kind")) != served:
            return (400, "BadRequest", f"the body is {body.get('apiVersion')}/{body.get('kind')}, not {served}"), None
        unknown = crds.unknown_fields(fake.crd_dir, body)
        if unknown and query.get("fieldValidation") == "Strict":
            return (422, "Invalid", "strict decoding error: " + ", ".join(unknown)), None
        body = crds.prune(fake.crd_dir, body)
        errors = crds.validate(fake.crd_dir, {k: v for k, v in body.items() if k != "status"})
        if errors:
            return (422, "Invalid", f"{served[1]} is invalid: " + "; ".join(errors)), None
        return None, body

    def handle_request(self, method: str, path: str, query: dict, body: dict):
        fake = self.fake
        with fake.lock:
            fake.requests.append((method, path))
        m = CUSTOM.match(path)
        served = crds.plurals(fake.crd_dir).get((m["group"], m["version"], m["plural"])) if m and fake.crd_dir else None
        if served is not None and method in ("POST", "PUT"):
            refused, body = self._admit(served, query, body)
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
                fake.objects[key] = body
            return self.reply(201 if method == "POST" else 200, body)
        if m and m["plural"] == "inferenceservices" and method == "GET" and m["name"]:
            with fake.lock:
                obj = fake.objects.get((m["plural"], m["ns"], m["name"]))
                if obj is not None:
                    _reconcile_isvc(fake, obj)
            if obj is None:
                return self._status(404, "NotFound", f"{m['name']} not found")
            return self.reply(200, obj)
        if m:
            key = (m["plural"], m["ns"], m["name"] or "")
            if method == "POST":
                key = (m["plural"], m["ns"], body["metadata"]["name"])
                with fake.lock:
                    if key in fake.objects:
                        return self._status(409, "AlreadyExists", f"{key[2]} already exists")
                    fake.objects[key] = body
                    if fake.runner is not None and m["plural"] == "trainjobs":
                        fake.scenarios[key[2]] = {"outcome": "run"}  # the nodes decide
                        fake.start_nodes(body)
                return self.reply(201, body)
            with fake.lock:
                obj = fake.objects.get(key)
            if obj is None:
                return self._status(404, "NotFound", f"{key[2]} not found")
            if method == "DELETE":
                with fake.lock:
                    del fake.objects[key]
                    fake.deleted.append(key[2])
                return self.reply(200, {"kind": "Status", "status": "Success"})
            with fake.lock:
                fake.gets[key[2]] = fake.gets.get(key[2], 0) + 1
                scenario = fake.scenarios.get(key[2], {"outcome": "succeed", "after": 2})
                if scenario["outcome"] != "run" and fake.gets[key[2]] > scenario.get("after", 2):
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
            items = [{"metadata": {"name": f"{job}-node-0-0", "namespace": m["ns"], "labels": labels}}] if exists else []
            return self.reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
        if m := LOG.match(path):
            job = m["pod"].removesuffix("-node-0-0")
            if job in fake.procs:  # follow: answer when node 0 has exited, with its whole log
                fake.procs[job][0].wait()
                return self.reply(200, fake.node_logs[job].read_text(), content_type="text/plain")
            return self.reply(200, "\n".join(fake.log_lines) + "\n", content_type="text/plain")
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
def fake_kube_server(workdir: Path, crd_dir: str | Path | None = None):
    """Yields (FakeKube, kubeconfig path) for a server on 127.0.0.1; stops it afterwards.

    `crd_dir`: serve the CRDs there strictly (see the module docstring); None: the job fakes only."""
    fake = FakeKube(crd_dir)
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
