"""Enterprise networks: one private CA (LABPIPE_CA_BUNDLE) and HTTPS_PROXY reach every client labpipe uses.

Every service is real and served over HTTPS with a certificate from a throwaway private CA (tests.support.tls):
the fake OpenAI teacher (TLS built in), and behind a TLS terminator (tests/support/netproxy.py) a moto S3
endpoint, a real `mlflow server`, a git repository over HTTP and the recording KFP API server. Each client runs
in a subprocess with only the variables a user would set, all traffic going through a forward proxy on
127.0.0.1 that counts its tunnels. Without the CA bundle the same calls fail on the certificate: the CA is what
makes them pass, not a lenient client.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support import servers
from tests.support.fake_kfp import FakeKFPServer
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.netproxy import forward_proxy, tls_terminator
from tests.support.tls import make_test_ca

pytestmark = pytest.mark.integration
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "AWS_CA_BUNDLE", "GIT_SSL_CAINFO", "CURL_CA_BUNDLE",
                "MLFLOW_TRACKING_SERVER_CERT_PATH", "LABPIPE_TRUST_STORE", "LABPIPE_CA_BUNDLE", "SSL_CERT_DIR")


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def proxy():
    with forward_proxy() as p:
        yield p


def _env(tmp_path: Path, proxy, ca_bundle: Path | None, **extra: str) -> dict[str, str]:
    """What a user behind a TLS-inspecting proxy sets: the proxy, and the CA bundle (or not)."""
    env = {k: v for k, v in os.environ.items() if k not in CA_VARIABLES and not k.lower().endswith("_proxy")}
    env.update(HTTPS_PROXY=proxy.url, https_proxy=proxy.url, NO_PROXY="", no_proxy="",
               LABPIPE_CACHE=str(tmp_path / "cache"), **extra)
    if ca_bundle is not None:
        env["LABPIPE_CA_BUNDLE"] = str(ca_bundle)
    return env


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)


def _labpipe(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labpipe.cli", *args], env=env, capture_output=True, text=True,
                          timeout=180)


def test_teacher_endpoint_through_proxy_with_private_ca(tmp_path, ca, proxy):
    with FakeOpenAIServer(ssl_context=ca.server_context()) as teacher:
        url = teacher.base_url.replace("127.0.0.1", "localhost")
        code = (
            "from labpipe.llm.client import make_client\n"
            "from labpipe.llm.types import ChatRequest, ModelSpec\n"
            f"c = make_client(ModelSpec({url!r}, model='fake-teacher', max_retries=0))\n"
            "[r] = c.complete([ChatRequest([{'role': 'user', 'content': 'hi'}], request_id='r1')])\n"
            "print('ok' if r.ok else r.error)\n"
        )
        before = proxy.through(url)
        done = _python(code, _env(tmp_path, proxy, ca.ca_bundle))
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
        assert teacher.total_requests == 1
        assert proxy.through(url) > before, "the client did not go through HTTPS_PROXY"

        refused = _python(code, _env(tmp_path, proxy, None))
        assert refused.returncode != 0
        assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr and "LABPIPE_CA_BUNDLE" in refused.stderr


def test_a_missing_ca_file_is_a_clear_cli_error(tmp_path, proxy):
    done = _labpipe(["--ca-bundle", str(tmp_path / "nope.pem"), "taxonomy", "validate", "--taxonomy",
                     str(tmp_path)], _env(tmp_path, proxy, None))
    assert done.returncode == 1
    assert "nope.pem" in done.stderr and "CA bundle file does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_s3_through_proxy_with_private_ca(tmp_path, ca, proxy):
    with servers.s3_server() as plain:
        import boto3

        boto3.client("s3", endpoint_url=plain, **servers._boto_kwargs()).create_bucket(Bucket="corp")
        with tls_terminator(int(plain.rsplit(":", 1)[1]), ca) as https:
            env = _env(tmp_path, proxy, ca.ca_bundle, AWS_ENDPOINT_URL=https, **servers.S3_ENV)
            code = ("from labpipe import storage\n"
                    "storage.write_text('s3://corp/hello.txt', 'through the proxy')\n"
                    "print(storage.read_text('s3://corp/hello.txt'))\n")
            before = proxy.through(https)
            done = _python(code, env)
            assert done.returncode == 0, done.stderr[-2000:]
            assert done.stdout.strip() == "through the proxy"
            assert proxy.through(https) > before

            refused = _python(code, _env(tmp_path, proxy, None, AWS_ENDPOINT_URL=https, **servers.S3_ENV))
            assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr


def test_git_clone_through_proxy_with_private_ca(tmp_path, ca, proxy):
    src = tmp_path / "src"
    src.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main", str(src)], check=True)
    (src / "README.md").write_text("taxonomy\n")
    subprocess.run([*git, "-C", str(src), "add", "."], check=True)
    subprocess.run([*git, "-C", str(src), "commit", "-qm", "first"], check=True)
    served = tmp_path / "served"
    subprocess.run(["git", "clone", "-q", "--bare", str(src), str(served / "taxonomy.git")], check=True)
    subprocess.run(["git", "-C", str(served / "taxonomy.git"), "update-server-info"], check=True)  # dumb HTTP

    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with tls_terminator(httpd.server_address[1], ca) as https:
            url = f"{https}/taxonomy.git"
            code = ("from labpipe.taxonomy.gitrepo import clone\n"
                    f"print(clone({url!r}, {str(tmp_path / 'clone')!r}))\n")
            before = proxy.through(https)
            done = _python(code, _env(tmp_path, proxy, ca.ca_bundle))
            assert done.returncode == 0, done.stderr[-2000:]
            assert (tmp_path / "clone" / "README.md").read_text() == "taxonomy\n"
            assert proxy.through(https) > before

            refused = _python(code.replace("'clone'", "'clone2'").replace("/clone", "/clone2"),
                              _env(tmp_path, proxy, None))
            assert refused.returncode != 0 and "certificate" in refused.stderr.lower()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_mlflow_through_proxy_with_private_ca(tmp_path, ca, proxy):
    with servers.mlflow_server(tmp_path) as plain, tls_terminator(int(plain.rsplit(":", 1)[1]), ca) as https:
        code = ("import labpipe.runs.tracking\n"  # any labpipe process: the package configures the trust store
                "import mlflow\n"
                f"mlflow.set_tracking_uri({https!r})\n"
                "mlflow.set_experiment('corp')\n"
                "with mlflow.start_run() as run:\n"
                "    mlflow.log_metric('yield', 0.5)\n"
                "print(run.info.run_id)\n")
        before = proxy.through(https)
        fast = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
        done = _python(code, _env(tmp_path, proxy, ca.ca_bundle, **fast))
        assert done.returncode == 0, done.stderr[-2000:]
        run_id = done.stdout.strip().splitlines()[-1]
        assert proxy.through(https) > before

        from mlflow.tracking import MlflowClient

        assert MlflowClient(tracking_uri=plain).get_run(run_id).data.metrics["yield"] == 0.5
        refused = _python(code, _env(tmp_path, proxy, None, **fast))
        assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr


def test_kfp_client_through_proxy_with_private_ca(tmp_path, ca, proxy):
    with FakeKFPServer(token="t0ken") as kfp, tls_terminator(int(kfp.url.rsplit(":", 1)[1]), ca) as https:
        args = ["submit", "--host", https, "--experiment", "corp", "--param", "taxonomy=/srv/taxonomy",
                "--param", "base_model=s3://models/granite"]
        before = proxy.through(https)
        done = _labpipe(args, _env(tmp_path, proxy, ca.ca_bundle, KFP_TOKEN="t0ken"))
        assert done.returncode == 0, done.stderr[-2000:]
        assert kfp.bodies("POST", "/apis/v2beta1/runs"), "the run never reached the pipeline server"
        assert proxy.through(https) > before

        refused = _labpipe(args, _env(tmp_path, proxy, None, KFP_TOKEN="t0ken"))
        assert refused.returncode == 1 and "Traceback" not in refused.stderr


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D401 - quiet test server
        pass


def test_proxy_variables_and_no_proxy_are_honoured_by_the_kfp_options(monkeypatch):
    from labpipe import net

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", "ds-pipeline-labpipe,.svc")
    assert net.kfp_client_options("https://kfp.example.com")["proxy"] == "http://proxy.corp:3128"
    assert "proxy" not in net.kfp_client_options("https://ds-pipeline-labpipe:8443")
    assert "proxy" not in net.kfp_client_options("https://x.labpipe.svc:8443")
    assert json.dumps(net.kfp_client_options("https://kfp.example.com"))  # plain strings only
