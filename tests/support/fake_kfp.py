"""A fake Kubeflow Pipelines API server (v2beta1 REST) that records what clients send.

For testing `labpipe submit` / `labpipe schedule` / `labpipe upload` through the real kfp.Client over real HTTP:
the point is what the client sends (pipeline spec, parameters, cron, experiment, pipeline versions), not running
anything. Pipelines and versions are kept and refused as the real API server refuses them (kubeflow/pipelines
master, backend/src/apiserver/storage/pipeline_store.go and pipeline_store_kubernetes.go): a second pipeline of
the same name and a second version of the same name in one pipeline are 409 AlreadyExists ("Failed to create a
new pipeline[ version]. The name … already exist(s)"); a run or recurring run naming a pipeline version that does
not exist is 404 NotFound; upload_version to an unknown pipeline is 404.
"""

from __future__ import annotations

import json
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qs, urlparse

from tests.support.jsonhttp import JsonHandler, Served

NOW = "2026-12-07T12:00:00Z"


class FakeKFPServer:
    def __init__(self, token: str = "sekret-token"):
        self.token = token
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, json body)
        self.experiments: dict[str, dict] = {}
        self.runs: list[dict] = []  # what GET /runs lists (newest first), as the API's JSON
        self.queries: list[tuple[str, dict]] = []  # (path, query parameters) of every request
        self.pipelines: dict[str, dict] = {}  # pipeline_id -> pipeline
        self.versions: dict[str, list[dict]] = {}  # pipeline_id -> its versions, oldest first (with the YAML)
        outer = self

        class Handler(JsonHandler):
            def _dispatch(self, method: str) -> None:
                if "multipart/form-data" not in (self.headers.get("Content-Type") or ""):
                    return super()._dispatch(method)
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                message = BytesParser(policy=HTTP).parsebytes(
                    f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + raw)
                files = {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                         for part in message.iter_parts()}  # fmt: skip
                self.handle_request(method, url.path, query, {"_files": files})

            def _error(self, status: int, code: int, message: str) -> None:  # grpc-gateway's error body
                self.reply(status, {"error": message, "code": code, "message": message, "details": []})

            def handle_request(self, method: str, path: str, query: dict, body: dict) -> None:
                outer.requests.append((method, path, body))
                outer.queries.append((path, query))
                if self.headers.get("Authorization") != f"Bearer {outer.token}":
                    return self.reply(401, {"error": "unauthenticated"})
                if path == "/apis/v2beta1/healthz":
                    return self.reply(200, {"multi_user": False})
                if path == "/apis/v2beta1/experiments" and method == "GET":
                    flt = json.loads(query.get("filter", "{}"))
                    name = flt.get("predicates", [{}])[0].get("string_value") or \
                        flt.get("predicates", [{}])[0].get("stringValue")
                    found = [e for e in outer.experiments.values() if e["display_name"] == name]
                    return self.reply(200, {"experiments": found, "total_size": len(found)} if found else {})
                if path == "/apis/v2beta1/experiments" and method == "POST":
                    exp = {"experiment_id": f"exp-{len(outer.experiments) + 1}", "display_name": body["display_name"]}
                    outer.experiments[exp["experiment_id"]] = exp
                    return self.reply(200, exp)
                if path == "/apis/v2beta1/runs" and method == "GET":
                    size = int(query.get("page_size", "10"))
                    return self.reply(200, {"runs": outer.runs[:size], "total_size": len(outer.runs)})
                if path == "/apis/v2beta1/pipelines" and method == "GET":
                    flt = json.loads(query.get("filter", "{}"))
                    name = (flt.get("predicates") or [{}])[0].get("string_value") or \
                        (flt.get("predicates") or [{}])[0].get("stringValue")
                    found = [p for p in outer.pipelines.values() if name is None or p["display_name"] == name]
                    return self.reply(200, {"pipelines": found, "total_size": len(found)} if found else {})
                if path == "/apis/v2beta1/pipelines" and method == "POST":
                    if any(p["display_name"] == body["display_name"] for p in outer.pipelines.values()):
                        return self._error(409, 6, f"Failed to create a new pipeline. The name "
                                                   f"{body['display_name']} already exists. Please specify a new name")
                    pipeline = {"pipeline_id": f"pl-{len(outer.pipelines) + 1}", "display_name": body["display_name"],
                                "name": body["display_name"], "description": body.get("description", ""),
                                "created_at": NOW}  # fmt: skip
                    outer.pipelines[pipeline["pipeline_id"]] = pipeline
                    outer.versions[pipeline["pipeline_id"]] = []
                    return self.reply(200, pipeline)
                if path == "/apis/v2beta1/pipelines/upload_version" and method == "POST":
                    pipeline_id, name = query.get("pipelineid", ""), query.get("name", "")
                    if pipeline_id not in outer.pipelines:
                        return self._error(404, 5, f"Pipeline {pipeline_id} not found")
                    if any(v["display_name"] == name for v in outer.versions[pipeline_id]):
                        return self._error(409, 6, f"Failed to create a new pipeline version. The name {name} "
                                                   "already exist. Please specify a new name")
                    spec = next(yaml_docs(body["_files"]["uploadfile"]))
                    version = {"pipeline_id": pipeline_id, "display_name": name, "name": name, "created_at": NOW,
                               "pipeline_version_id": f"{pipeline_id}-v{len(outer.versions[pipeline_id]) + 1}",
                               "pipeline_spec": spec}  # fmt: skip
                    outer.versions[pipeline_id].append(version)
                    return self.reply(200, version)
                if path.startswith("/apis/v2beta1/pipelines/") and path.endswith("/versions") and method == "GET":
                    pipeline_id = path.split("/")[-2]
                    if pipeline_id not in outer.pipelines:
                        return self._error(404, 5, f"Pipeline {pipeline_id} not found")
                    found = list(outer.versions[pipeline_id])
                    if query.get("sort_by") == "created_at desc":
                        found.reverse()
                    flt = json.loads(query.get("filter", "{}"))
                    for pred in flt.get("predicates") or []:
                        value = pred.get("string_value") or pred.get("stringValue")
                        found = [v for v in found if v[pred["key"]] == value]
                    found = found[: int(query.get("page_size", "20"))]
                    return self.reply(200, {"pipeline_versions": found, "total_size": len(found)} if found else {})
                if path in ("/apis/v2beta1/runs", "/apis/v2beta1/recurringruns") and method == "POST":
                    ref = body.get("pipeline_version_reference")
                    if ref and not any(v["pipeline_version_id"] == ref.get("pipeline_version_id")
                                       for v in outer.versions.get(ref.get("pipeline_id"), [])):  # fmt: skip
                        return self._error(404, 5, f"Pipeline version {ref.get('pipeline_version_id')} not found")
                    if path.endswith("/runs"):
                        return self.reply(200, {**body, "run_id": "run-1", "state": "PENDING"})
                    return self.reply(200, {**body, "recurring_run_id": "rr-1", "status": "ENABLED"})
                return self.reply(404, {"error": f"not faked: {method} {path}"})

        self._served = Served(Handler)
        self.url = self._served.url

    def __enter__(self) -> FakeKFPServer:
        self._served.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._served.__exit__(*exc)

    def bodies(self, method: str, path: str) -> list[dict]:
        return [b for m, p, b in self.requests if m == method and p == path]


def yaml_docs(data: bytes):
    import yaml

    return (d for d in yaml.safe_load_all(data.decode()) if d)
