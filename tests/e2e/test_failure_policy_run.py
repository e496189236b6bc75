"""`labpipe run` with a teacher that fails one request in hundreds: the run finishes and says so.

The teacher (and judge) is the fake OpenAI-compatible server, because the point is labpipe's behaviour under
a fault: its hook answers one request (every attempt of it) with an HTTP 400, as a server does for a prompt
it will never take. The failure policy is set as a pipeline parameter (`--param max_failed_share=0.01`);
everything else is `labpipe run`'s own default (kfp.local, the tiny model trained and evaluated, MLflow).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from labpipe.cli import main
from tests.support.fake_openai import FakeOpenAIServer, FaultPlan, Reply, default_responder

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(1500)]


class OneBadRequest:
    """Every attempt of one teacher request (the first that asks for questions) fails with a 400."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.chosen: str | None = None
        self.refused = 0

    def __call__(self, request: dict, attempt: int):
        text = json.dumps([request.get("messages"), request.get("seed")])  # one request: its prompt and seed
        with self.lock:
            if self.chosen is None and "questions" in text and "labpipe_probe" not in json.dumps(request):
                self.chosen = text
            if text != self.chosen:
                return None
            self.refused += 1
        return Reply(
            400, {"error": {"message": "this prompt is refused by policy", "type": "invalid_request_error"}}
        )


def responder(request: dict):
    """Schema-bound requests get schema instances; MT-Bench's judge prompts get a rating it can parse."""
    if "[[rating]]" in json.dumps(request.get("messages")):
        return "The answer is adequate. Rating: [[5]]"
    return default_responder(request)


def test_a_run_whose_teacher_fails_one_request_in_hundreds_finishes_and_reports_it(
    tmp_path, shared_data, capsys, monkeypatch
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    hook = OneBadRequest()
    with FakeOpenAIServer(responder, model="fake-teacher", faults=FaultPlan(hook=hook)) as teacher:
        rc = main([
            "run", "--workdir", str(tmp_path), "--plain", "--teacher", teacher.base_url,
            "--teacher-model", "fake-teacher", "--param", f"questions={shared_data / 'mt_bench'}",
            "--param", "max_failed_share=0.01", "--param", "generation_gate=false",
            "--param", "chunk_tokens=64",  # the sample's document in ~40 chunks: ~220 teacher requests
        ])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out
    assert hook.refused == 1  # a 400 that is not about the request's shape is not sent again

    from labpipe.pipelines.runner import collect_artifacts

    [job] = [p for p in (tmp_path / "kfp").iterdir() if p.is_dir()]
    [generated] = [a for a in collect_artifacts(job) if a.name == "generated"]
    manifest = json.loads((Path(generated.uri) / "manifest.json").read_text())
    failures = manifest["failures"]
    assert failures["failed"] == failures["tolerated"] == 1 and failures["total"] >= 100  # one in hundreds
    assert "refused by policy" in failures["reasons"]["http"]["example"]
    assert generated.metadata["failure_kinds"] == {"http": 1}

    # said where a person looks: the stage view's line, the run's summary, the run report
    assert "1 failed: 1 http; tolerated up to 1%" in out
    assert "failed     3 synthetic generation: 1 request(s) failed for good" in out
    report = (tmp_path / "report.html").read_text()
    assert "1 of " in report and "requests failed for good, tolerated (allowed: 1%)" in report
    assert "refused by policy" in report
