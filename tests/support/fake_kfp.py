"""A fake Kubeflow Pipelines API server (v2beta1 REST) that records what clients send.

For testing `labpipe submit` / `labpipe schedule` through the real kfp.Client over real HTTP: the point
is what the client sends (pipeline spec, parameters, cron, experiment), not running anything.
"""

from __future__ import annotations

import json

from tests.support.jsonhttp import JsonHandler, Served


class FakeKFPServer:
    def __init__(self, token: str = "sekret-token"):
        self.token = token
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, json body)
        self.experiments: dict[str, dict] = {}
        self.runs: list[dict] = []  # what GET /runs lists (newest first), as the API's JSON
        self.queries: list[tuple[str, dict]] = []  # (path, query parameters) of every request
        outer = self

        class Handler(JsonHandler):
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
                if path == "/apis/v2beta1/runs" and method == "POST":
                    return self.reply(200, {**body, "run_id": "run-1", "state": "PENDING"})
                if path == "/apis/v2beta1/recurringruns" and method == "POST":
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
