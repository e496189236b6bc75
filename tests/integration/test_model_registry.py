"""Kubeflow Model Registry registration through the real `model-registry` client over HTTP, against a
local fake of the registry's REST API (tests/support/fake_model_registry.py): the calls, the token, and
the user errors (a version name taken, a wrong token, not a URL)."""

from __future__ import annotations

import pytest

from labpipe.errors import UserError
from labpipe.registry.model_registry import register_version
from tests.support.fake_model_registry import FakeModelRegistry


def test_register_then_a_taken_version_is_a_user_error(monkeypatch):
    monkeypatch.setenv("LABPIPE_MODEL_REGISTRY_TOKEN", "tok")
    with FakeModelRegistry(token="tok") as registry:
        ids = register_version(registry.url, "labpipe-model", "3", "s3://b/model", properties={"k": "v"})
        assert ids["version"] == "3" and ids["model_version_id"] in registry.versions
        again = register_version(registry.url, "labpipe-model", "4", "s3://b/model2", properties={})
        assert len(registry.models) == 1 and len(registry.versions) == 2  # the model is reused
        assert again["registered_model_id"] == ids["registered_model_id"]
        with pytest.raises(UserError, match="Version 3 already exists"):
            register_version(registry.url, "labpipe-model", "3", "s3://b/other", properties={})
    paths = [path for _, path, _, _ in registry.requests]
    assert "/api/model_registry/v1/registered_models" in paths and "/api/model_registry/v1/model_versions" in paths


def test_wrong_token_and_bad_address_are_user_errors(monkeypatch):
    monkeypatch.setenv("LABPIPE_MODEL_REGISTRY_TOKEN", "wrong")
    with FakeModelRegistry(token="tok") as registry:
        with pytest.raises(UserError) as err:
            register_version(registry.url, "labpipe-model", "1", "s3://b/model", properties={})
    assert "LABPIPE_MODEL_REGISTRY_TOKEN" in str(err.value.problems[0]) and "wrong" not in str(err.value.problems[0])
    with pytest.raises(UserError, match="not a Model Registry URL"):
        register_version("model-registry:8080", "m", "1", "s3://b/model", properties={})
