"""TLS with a private CA: the client trusts the fake teacher only when given the CA bundle."""

from __future__ import annotations

import pytest

from labpipe.errors import UserError
from labpipe.llm.client import make_client
from labpipe.llm.types import ModelSpec
from tests.support.chat import user_request
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.tls import make_test_ca


def test_https_endpoint_with_custom_ca_bundle(tmp_path):
    ca = make_test_ca(tmp_path)
    request = user_request("hello", "a")
    with FakeOpenAIServer(ssl_context=ca.server_context()) as server:
        assert server.base_url.startswith("https://")
        trusted = make_client(ModelSpec(server.base_url, ca_bundle=str(ca.ca_bundle)))
        assert trusted.complete([request])[0].ok
        with pytest.raises(UserError) as err:
            make_client(ModelSpec(server.base_url, model=server.model, max_retries=1)).complete([request])
        assert "CA bundle" in str(err.value)
