"""Every task of the compiled pipeline gets the enterprise-network settings (labpipe.net): the optional CA
bundle secret as a file with LABPIPE_CA_BUNDLE pointing at it, and the optional proxy ConfigMap as env."""

from __future__ import annotations

import pytest
import yaml

from labpipe.paths import pipelines_dir


def _docs(name: str, tmp_path):
    if name == "lab_pipeline":
        path = pipelines_dir() / "lab_pipeline.yaml"
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
        assert env.get("LABPIPE_CA_BUNDLE") == "/etc/labpipe/ca/ca.crt", name
        [ca] = [s for s in k8s[name].get("secretAsVolume", []) if s["secretName"] == "labpipe-ca"]
        assert ca["mountPath"] == "/etc/labpipe/ca" and ca["optional"] is True, name
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
    from labpipe.testing.tls import make_test_ca

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
