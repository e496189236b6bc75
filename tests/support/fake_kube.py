"""A fake Kubernetes API server on 127.0.0.1 for the training-job lifecycle tests.

A FAKE, and said so: no controller runs the job. It speaks the real REST paths and JSON the `kubernetes` client
uses (custom objects create/get/delete, pod list by label selector, pod log with follow), keeps the objects
in memory, and moves a job to the outcome its scenario names after a few GETs, so that submit -> watch ->
fail/succeed -> delete, a cancelled run and a leftover job can be driven over real HTTP.
"""

from __future__ import annotations

import json
import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

CUSTOM = re.compile(r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods$")
LOG = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<pod>[^/]+)/log$")
DONE = {"trainjobs": ("Complete", "Failed"), "pytorchjobs": ("Succeeded", "Failed")}


class FakeKube:
    def __init__(self):
        self.objects: dict[tuple[str, str, str], dict] = {}  # (plural, ns, name) -> object
        self.gets: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        self.deleted: list[str] = []
        # name -> {"outcome": "succeed" | "fail" | "run", "after": GETs before the outcome, "reason", "message"}
        self.scenarios: dict[str, dict] = {}
        self.log_lines = ["step 1 loss 6.37", "step 2 loss 6.22", "training done"]
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKube

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body, content_type="application/json"):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, status: int, reason: str, message: str):
        self._send(status, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                            "message": message, "code": status})  # fmt: skip

    def _route(self, method: str):
        url = urlparse(self.path)
        fake = self.fake
        with fake.lock:
            fake.requests.append((method, url.path))
        if m := CUSTOM.match(url.path):
            key = (m["plural"], m["ns"], m["name"] or "")
            if method == "POST":
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = (m["plural"], m["ns"], body["metadata"]["name"])
                with fake.lock:
                    if key in fake.objects:
                        return self._status(409, "AlreadyExists", f"{key[2]} already exists")
                    fake.objects[key] = body
                return self._send(201, body)
            with fake.lock:
                obj = fake.objects.get(key)
            if obj is None:
                return self._status(404, "NotFound", f"{key[2]} not found")
            if method == "DELETE":
                with fake.lock:
                    del fake.objects[key]
                    fake.deleted.append(key[2])
                return self._send(200, {"kind": "Status", "status": "Success"})
            with fake.lock:
                fake.gets[key[2]] = fake.gets.get(key[2], 0) + 1
                scenario = fake.scenarios.get(key[2], {"outcome": "succeed", "after": 2})
                if scenario["outcome"] != "run" and fake.gets[key[2]] > scenario.get("after", 2):
                    done, failed = DONE[m["plural"]]
                    kind = done if scenario["outcome"] == "succeed" else failed
                    obj["status"] = {"conditions": [{"type": "Created", "status": "True"}, {
                        "type": kind, "status": "True", "reason": scenario.get("reason", ""),
                        "message": scenario.get("message", "")}]}  # fmt: skip
            return self._send(200, obj)
        if m := PODS.match(url.path):
            selector = parse_qs(url.query).get("labelSelector", [""])[0]
            labels = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
            job = labels.get("jobset.sigs.k8s.io/jobset-name") or labels.get("training.kubeflow.org/job-name")
            with fake.lock:
                exists = any(k[2] == job for k in fake.objects)
            items = [{"metadata": {"name": f"{job}-node-0-0", "namespace": m["ns"], "labels": labels}}] if exists else []
            return self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
        if LOG.match(url.path):
            return self._send(200, "\n".join(fake.log_lines) + "\n", content_type="text/plain")
        return self._status(404, "NotFound", url.path)

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_DELETE(self):
        self._route("DELETE")


@contextmanager
def fake_kube_server(workdir: Path):
    """Yields (FakeKube, kubeconfig path) for a server on 127.0.0.1; stops it afterwards."""
    fake = FakeKube()
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "fake", "user": {"token": "fake-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "lab"}}],
    }))  # fmt: skip
    try:
        yield fake, kubeconfig
    finally:
        server.shutdown()
        server.server_close()
