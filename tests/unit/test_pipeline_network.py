"""Every task of the compiled pipeline gets the enterprise-network settings (labpipe.net): the optional CA
bundle secret and OpenShift AI's optional `odh-trusted-ca-bundle` ConfigMap as files with LABPIPE_CA_BUNDLE
naming them, and the optional proxy ConfigMap as env.

The ConfigMap and its keys are the platform's: opendatahub-io/opendatahub-operator (DSCInitialization
trustedCABundle) injects `odh-trusted-ca-bundle` into projects with `ca-bundle.crt` (the cluster's CAs, injected by
the network operator) and `odh-ca-bundle.crt` (the custom CA bundle, may be empty); opendatahub-io/data-science-
pipelines-operator main reads the same two keys for the pipeline server (controllers/dspipeline_params.go)."""

from __future__ import annotations

import pytest
import yaml

from tests.support.compiled import compiled_path


def _docs(name: str, tmp_path):
    if name == "lab_pipeline":
        path = compiled_path()
    else:  # the data-only pipeline is not checked in: compile it here
        from kfp import compiler
        from labpipe.pipelines.lab_pipeline import generation_pipeline

        path = tmp_path / "generation.yaml"
        compiler.Compiler().compile(generation_pipeline, str(path))
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("pipeline", ["lab_pipeline", "generation_pipeline"])
def test_every_task_gets_the_ca_bundle_and_the_proxy_settings(pipeline, tmp_path):
    docs = _docs(pipeline, tmp_path)
    spec, platform = docs[0], next(d for d in docs if "platforms" in d)
    executors = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors
    for name, executor in executors.items():
        env = {e["name"]: e["value"] for e in executor["container"].get("env", [])}
        assert env.get("LABPIPE_CA_BUNDLE", "").split(":") == [
            "/etc/labpipe/ca/ca.crt", "/etc/labpipe/odh-ca/ca-bundle.crt", "/etc/labpipe/odh-ca/odh-ca-bundle.crt"], name
        [ca] = [s for s in k8s[name].get("secretAsVolume", []) if s["secretName"] == "labpipe-ca"]
        assert ca["mountPath"] == "/etc/labpipe/ca" and ca["optional"] is True, name
        [odh] = [c for c in k8s[name].get("configMapAsVolume", []) if c["configMapName"] == "odh-trusted-ca-bundle"]
        assert odh["mountPath"] == "/etc/labpipe/odh-ca" and odh["optional"] is True, name
        [net] = [c for c in k8s[name].get("configMapAsEnv", []) if c["configMapName"] == "labpipe-network"]
        assert net["optional"] is True, name
        assert {k["envVar"] for k in net["keyToEnv"]} == {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"}, name


def test_missing_optional_cluster_ca_means_public_roots(monkeypatch, tmp_path):
    from labpipe import net

    monkeypatch.setenv("LABPIPE_CA_BUNDLE", net.CLUSTER_CA_PATH)  # the secret is optional: not mounted here
    monkeypatch.delenv("LABPIPE_TRUST_STORE", raising=False)
    assert net.private_ca() is None


def test_private_ca_is_added_to_the_public_roots(monkeypatch, tmp_path):
    import certifi

    from labpipe import net
    from tests.support.tls import make_test_ca

    ca = make_test_ca(tmp_path / "ca")
    monkeypatch.setenv("LABPIPE_CA_BUNDLE", str(ca.ca_bundle))
    monkeypatch.setenv("LABPIPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LABPIPE_TRUST_STORE", raising=False)
    store = open(net.trust_store(), "rb").read()
    assert ca.ca_bundle.read_bytes().strip() in store
    assert open(certifi.where(), "rb").read().strip()[:2000] in store


def test_a_bad_pem_names_the_file(monkeypatch, tmp_path):
    import pytest

    from labpipe import net
    from labpipe.errors import UserError

    bad = tmp_path / "ca.crt"
    bad.write_text("not a certificate\n")
    monkeypatch.setenv("LABPIPE_CA_BUNDLE", str(bad))
    monkeypatch.delenv("LABPIPE_TRUST_STORE", raising=False)
    with pytest.raises(UserError) as err:
        net.trust_store()
    assert str(bad) in str(err.value.problems[0]) and "PEM" in str(err.value.problems[0])


def test_the_platform_ca_bundle_is_added_next_to_the_labpipe_ca(monkeypatch, tmp_path):
    """Two CA files (labpipe-ca's and the platform's odh-trusted-ca-bundle key): both join the trust store, and a
    TLS server signed by the platform's CA is reached with it; an absent or empty optional mount is skipped."""
    import ssl
    import threading
    import urllib.request
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from labpipe import net
    from tests.support.tls import make_test_ca

    ours, platform = make_test_ca(tmp_path / "ours"), make_test_ca(tmp_path / "platform")
    absent = f"{net.CLUSTER_TRUSTED_CA_DIR}/odh-ca-bundle.crt"  # optional: not mounted here
    monkeypatch.setenv("LABPIPE_CA_BUNDLE", ":".join([str(ours.ca_bundle), str(platform.ca_bundle), absent]))
    monkeypatch.setenv("LABPIPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LABPIPE_TRUST_STORE", raising=False)
    assert net.private_cas() == [str(ours.ca_bundle), str(platform.ca_bundle)]
    store = net.trust_store()

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hello)
    server.socket = platform.server_context().wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}/"
        with urllib.request.urlopen(url, context=ssl.create_default_context(cafile=store), timeout=10) as resp:
            assert resp.read() == b"hello"
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):  # without the platform's CA: refused
            urllib.request.urlopen(url, context=ssl.create_default_context(cafile=str(ours.ca_bundle)), timeout=10)
    finally:
        server.shutdown()
        server.server_close()
