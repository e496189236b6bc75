"""Session-scoped real servers for integration tests (see tests/support/servers.py)."""

from __future__ import annotations

import pytest

from tests.support.servers import S3_ENV, mlflow_server, s3_server


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    with s3_server() as url:
        yield url


@pytest.fixture
def s3_env(monkeypatch, s3_endpoint) -> str:
    """Point the standard AWS variables at the local moto endpoint for one test."""
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    return s3_endpoint


@pytest.fixture(scope="session")
def mlflow_server_url(tmp_path_factory, s3_endpoint) -> str:
    """A real `mlflow server` with a SQLite store whose artifacts are proxied to the moto S3 endpoint."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server"), s3_endpoint=s3_endpoint) as url:
        yield url
