"""What OpenAIChatClient hands to httpx: the CA bundle, the timeout, the auth header (and nothing leaks)."""

from __future__ import annotations

import ssl

import pytest

from labpipe.errors import UserError
from labpipe.llm.client import make_client
from labpipe.llm.openai_client import OpenAIChatClient
from labpipe.llm.types import ModelSpec
from tests.support.tls import make_test_ca


def test_ca_bundle_reaches_httpx(tmp_path):
    ca = make_test_ca(tmp_path)
    client = OpenAIChatClient(
        ModelSpec("https://teacher.example/v1", ca_bundle=str(ca.ca_bundle), timeout_s=7)
    )
    options = client.httpx_options()
    assert isinstance(options["verify"], ssl.SSLContext)
    assert [c["subject"] for c in options["verify"].get_ca_certs()] == [
        ((("commonName", "labpipe test CA"),),)
    ]
    assert options["timeout"].read == 7 and options["base_url"] == "https://teacher.example/v1"


def test_without_a_ca_bundle_the_default_trust_store_is_used():
    verify = OpenAIChatClient(ModelSpec("https://teacher.example/v1")).httpx_options()["verify"]
    assert isinstance(verify, ssl.SSLContext) and len(verify.get_ca_certs()) > 10


def test_missing_ca_bundle_is_a_user_error(tmp_path):
    client = OpenAIChatClient(ModelSpec("https://teacher.example/v1", ca_bundle=str(tmp_path / "nope.pem")))
    with pytest.raises(UserError, match="ca-bundle"):
        client.httpx_options()


def test_key_is_in_the_header_only(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-unit-secret-42")
    spec = ModelSpec("https://teacher.example/v1", api_key_env="MY_KEY")
    client = make_client(spec)
    assert client.httpx_options()["headers"]["authorization"] == "Bearer sk-unit-secret-42"
    for text in (
        repr(client),
        repr(spec),
        str(spec.describe()),
        repr(client.httpx_options()),
        repr(vars(spec)),
    ):
        assert "sk-unit-secret-42" not in text
