"""A fake Kubeflow Pipelines API server (v2beta1 REST) that records what clients send.

For testing `labpipe submit` / `labpipe schedule` through the real kfp.Client over real HTTP: the point
is what the client sends (pipeline spec, parameters, cron, experiment), not running anything.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class FakeKFPServer:
    def __init__(self, token: str = "sekret-token"):
        self.token = token
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, json body)
        self.experiments: dict[str, dict] = {}
        self.runs: list[dict] = []  # what GET /runs lists (newest first), as the API's JSON
        self.queries: list[tuple[str, dict]] = []  # (path, query parameters) of every request
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                url = urlparse(self.path)
                outer.requests.append((method, url.path, body))
                outer.queries.append((url.path, {k: v[0] for k, v in parse_qs(url.query).items()}))
                if self.headers.get("Authorization") != f"Bearer {outer.token}":
                    return self._reply(401, {"error": "unauthenticated"})
                path = url.path
                if path == "/apis/v2beta1/healthz":
                    return self._reply(200, {"multi_user": False})
                if path == "/apis/v2beta1/experiments" and method == "GET":
                    flt = json.loads(parse_qs(url.query).get("filter", ["{}"])[0])
                    name = flt.get("predicates", [{}])[0].get("string_value") or \
                        flt.get("predicates", [{}])[0].get("stringValue")
                    found = [e for e in outer.experiments.values() if e["display_name"] == name]
                    return self._reply(200, {"experiments": found, "total_size": len(found)} if found else {})
                if path == "/apis/v2beta1/experiments" and method == "POST":
                    exp = {"experiment_id": f"exp-{len(outer.experiments) + 1}", "display_name": body["display_name"]}
                    outer.experiments[exp["experiment_id"]] = exp
                    return self._reply(200, exp)
                if path == "/apis/v2beta1/runs" and method == "GET":
                    size = int(parse_qs(url.query).get("page_size", ["10"])[0])
                    return self._reply(200, {"runs": outer.runs[:size], "total_size": len(outer.runs)})
                if path == "/apis/v2beta1/runs" and method == "POST":
                    return self._reply(200, {**body, "run_id": "run-1", "state": "PENDING"})
                if path == "/apis/v2beta1/recurringruns" and method == "POST":
                    return self._reply(200, {**body, "recurring_run_id": "rr-1", "status": "ENABLED"})
                return self._reply(404, {"error": f"not faked: {method} {path}"})

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKFPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def bodies(self, method: str, path: str) -> list[dict]:
        return [b for m, p, b in self.requests if m == method and p == path]
