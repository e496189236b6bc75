"""A fake Kubeflow Model Registry: the REST API shape (`/api/model_registry/v1/...`) that the
`model-registry` client uses to register a model, served in memory over real HTTP, recording requests.

It is a fake (no real registry server is installable here): it implements what registration touches
(find/create registered model, find/create model version, create/find/list the version's model
artifact, list registered models) with the registry's JSON field names, and answers 404 for what it does not know.
"""

from __future__ import annotations

import time

from tests.support.jsonhttp import JsonHandler, Served

API = "/api/model_registry/v1"


class FakeModelRegistry:
    def __init__(self, token: str | None = None):
        self.token = token
        self.requests: list[tuple[str, str, dict, dict]] = []  # (method, path, query, json body)
        self.headers: list[dict[str, str]] = []
        self.models: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.artifacts: dict[str, dict] = {}  # artifact id -> artifact (with "_version" = version id)
        self._ids = 0
        outer = self

        class Handler(JsonHandler):
            def handle_request(self, method: str, path: str, query: dict, body: dict) -> None:
                outer.requests.append((method, path, query, body))
                outer.headers.append(dict(self.headers))
                if outer.token and self.headers.get("Authorization") != f"Bearer {outer.token}":
                    return self.reply(401, {"code": "401", "message": "unauthorized"})
                self.reply(*outer.route(method, path, query, body))

        self._served = Served(Handler)
        self.url = self._served.url

    def _new(self, body: dict) -> dict:
        self._ids += 1
        now = str(int(time.time() * 1000))
        return {**body, "id": str(self._ids), "createTimeSinceEpoch": now, "lastUpdateTimeSinceEpoch": now}

    @staticmethod
    def _page(items: list[dict]) -> dict:
        return {"items": items, "size": len(items), "pageSize": max(len(items), 1), "nextPageToken": ""}

    def route(self, method: str, path: str, query: dict, body: dict) -> tuple[int, dict]:
        missing = (404, {"code": "404", "message": f"not found: {method} {path}"})
        if not path.startswith(API):
            return missing
        path = path[len(API):]
        if path == "/registered_models" and method == "GET":
            return 200, self._page(list(self.models.values()))
        if path == "/registered_models" and method == "POST":
            model = self._new({"state": "LIVE", **body})
            self.models[model["id"]] = model
            return 201, model
        if path == "/registered_model" and method == "GET":
            found = [m for m in self.models.values() if m["name"] == query.get("name")]
            return (200, found[0]) if found else missing
        if path.startswith("/registered_models/") and method == "GET":
            rid = path.split("/")[2]
            if path.endswith("/versions"):
                return 200, self._page([v for v in self.versions.values() if v["registeredModelId"] == rid])
            return (200, self.models[rid]) if rid in self.models else missing
        if path == "/model_version" and method == "GET":
            found = [v for v in self.versions.values()
                     if v["name"] == query.get("name") and v["registeredModelId"] == query.get("parentResourceId")]
            return (200, found[0]) if found else missing
        if path == "/model_versions" and method == "POST":
            if body.get("registeredModelId") not in self.models:
                return 400, {"code": "400", "message": "unknown registeredModelId"}
            version = self._new({"state": "LIVE", **body})
            self.versions[version["id"]] = version
            return 201, version
        if path == "/model_artifact" and method == "GET":
            found = [a for a in self.artifacts.values()
                     if a.get("name") == query.get("name") and a["_version"] == query.get("parentResourceId")]
            return (200, {k: v for k, v in found[0].items() if k != "_version"}) if found else missing
        if path.startswith("/model_versions/") and path.endswith("/artifacts"):
            vid = path.split("/")[2]
            if vid not in self.versions:
                return missing
            if method == "POST":
                artifact = self._new({"state": "UNKNOWN", **body, "_version": vid})
                self.artifacts[artifact["id"]] = artifact
                return 200, {k: v for k, v in artifact.items() if k != "_version"}
            return 200, self._page([{k: v for k, v in a.items() if k != "_version"}
                                    for a in self.artifacts.values() if a["_version"] == vid])
        return missing

    def __enter__(self) -> FakeModelRegistry:
        self._served.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._served.__exit__(*exc)
