"""Several replicas of the teacher (`teacher=http://a/v1,http://b/v1`, what generation routes between) pass
preflight: each replica is probed with the OpenAI client's own probe (GET /v1/models), and a replica that
is down, refuses the key or does not serve the model is named. Against two of our fake OpenAI-compatible
servers (real HTTP; the point is our behaviour with several endpoints) and a closed port."""

from __future__ import annotations

import socket

import pytest

from labpipe.preflight import Report, check_endpoint
from tests.support.fake_openai import FakeOpenAIServer

pytestmark = [pytest.mark.integration]


@pytest.fixture
def replicas(monkeypatch):
    monkeypatch.setenv("TEACHER_API_KEY", "sk-good")
    with (
        FakeOpenAIServer(model="mixtral", api_key="sk-good") as a,
        FakeOpenAIServer(model="mixtral", api_key="sk-good") as b,
    ):
        yield a, b


def _closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def _check(target: str, model: str = "mixtral") -> Report:
    report = Report()
    check_endpoint("teacher", {"teacher": target, "teacher_model": model}, report, timeout=5)
    return report


def test_every_replica_is_probed_and_passes(replicas):
    a, b = replicas
    report = _check(f"{a.base_url},{b.base_url}")
    assert report.problems == [] and report.passed == [
        f"teacher: 2 replicas ({a.base_url},{b.base_url}) serves mixtral"
    ]
    assert a.models_requests >= 1 and b.models_requests >= 1  # each one, not the first only


def test_a_replica_that_is_down_or_wrong_is_named(replicas, monkeypatch):
    a, _ = replicas
    dead = _closed_url()
    [problem] = _check(f"{a.base_url},{dead}").problems
    assert problem.field == "teacher" and dead in problem.message and "does not answer" in problem.message
    with FakeOpenAIServer(model="llama", api_key="sk-good") as other:
        url = other.base_url
        [problem] = _check(f"{a.base_url}, {url}").problems
    assert problem.field == "teacher_model" and url in problem.message and "llama" in problem.message
    with FakeOpenAIServer(model="mixtral", api_key="sk-other") as locked:
        url = locked.base_url
        [problem] = _check(f"{a.base_url},{url}").problems
    assert problem.field == "api_key" and url in problem.message
    assert "sk-good" not in str(problem)
