"""OpenShift AI's MLflow authenticates each request with the caller's Kubernetes token and routes it to
the project's workspace. With MLFLOW_TRACKING_AUTH=kubernetes-namespaced (mlflow[kubernetes]), labpipe's
stage runs send the pod's service-account token and namespace: checked offline through a header-recording
proxy that, like the platform's auth proxy, refuses requests without the expected token and forwards the
rest to a real `mlflow server --enable-workspaces` (the namespace is the workspace)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from mlflow.tracking import MlflowClient

from labpipe import tracking
from tests.support.servers import mlflow_server

TOKEN = "sa-token-of-the-pipeline-runner"
NAMESPACE = "team-llm"


class AuthProxy:
    """Records every request's headers; 401 without `Bearer TOKEN`; else forwards to `upstream`."""

    def __init__(self, upstream: str):
        self.seen: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self):
                outer.seen.append({k.lower(): v for k, v in self.headers.items()})
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "authorization", "content-length")}
                reply = httpx.request(self.command, upstream + self.path, content=body, headers=headers, timeout=60)
                self.send_response(reply.status_code)
                for k, v in reply.headers.items():
                    if k.lower() not in ("transfer-encoding", "content-encoding", "content-length", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def workspace_server(tmp_path_factory) -> str:
    """A real `mlflow server` with workspaces on (SQLite store), holding the workspace NAMESPACE."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow-ws"), extra_args=("--enable-workspaces",)) as url:
        MlflowClient(tracking_uri=url).create_workspace(NAMESPACE)
        yield url


@pytest.fixture
def service_account(tmp_path, monkeypatch):
    """The pod's service-account files (token, namespace), where the auth provider reads them."""
    import mlflow.tracking.request_auth.kubernetes_request_auth_provider as provider

    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "namespace").write_text(NAMESPACE + "\n")
    monkeypatch.setattr(provider, "_SERVICE_ACCOUNT_TOKEN_PATH", tmp_path / "token")
    monkeypatch.setattr(provider, "_SERVICE_ACCOUNT_NAMESPACE_PATH", tmp_path / "namespace")
    if provider._file_cache is not None:
        provider._file_cache.clear()
    yield
    # the provider makes the workspace the process's active one (a ContextVar and MLFLOW_WORKSPACE): later
    # tests talk to servers without workspaces
    from mlflow.utils.workspace_context import set_workspace

    set_workspace(None)


def test_stage_runs_send_the_service_account_token_and_workspace(workspace_server, service_account, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_AUTH", "kubernetes-namespaced")
    with AuthProxy(workspace_server) as proxy:
        with tracking.maybe_stage_run("taxonomy_diff", pipeline_run_id="kfp-k8s-auth", tracking_uri=proxy.url) as run:
            run.log_metrics({"leaves": 1})
        closed = tracking.close_pipeline_run(proxy.url, "kfp-k8s-auth", state="SUCCEEDED")
    assert proxy.seen, "no request went through the proxy"
    assert all(h.get("authorization") == f"Bearer {TOKEN}" for h in proxy.seen)
    assert all(h.get("x-mlflow-workspace") == NAMESPACE for h in proxy.seen)
    # it all reached the real server, in the project's workspace
    monkeypatch.delenv("MLFLOW_TRACKING_AUTH")
    monkeypatch.setenv("MLFLOW_WORKSPACE", NAMESPACE)
    client = MlflowClient(tracking_uri=workspace_server)
    assert client.get_run(run.run_id).data.metrics == {"leaves": 1.0}
    assert client.get_run(closed["mlflow_run_id"]).info.status == "FINISHED"


def test_without_the_auth_provider_the_proxy_refuses(workspace_server, service_account, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_AUTH", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with AuthProxy(workspace_server) as proxy:
        with pytest.raises(Exception, match="401|Unauthorized|UNAUTHENTICATED"):
            with tracking.maybe_stage_run("taxonomy_diff", pipeline_run_id="kfp-no-auth", tracking_uri=proxy.url):
                pass
    assert proxy.seen and "authorization" not in proxy.seen[0]
