"""`labpipe review` on the sample taxonomy's contributor branch (contrib/new-leaves: one good leaf, one
near-duplicate of the haiku leaf, one broken leaf), as a curator runs it: the real CLI in a subprocess, the
tiny model as base model (chunk tokenizer, and the model asked the seed questions), and the fake
OpenAI-compatible server as teacher and judge. The fake server is used because the point here is labpipe's
behaviour (verdicts, exit code, outputs, what is sent and reused), not data quality: it answers every
schema request with a valid instance and, as an MT-Bench judge, a fixed rating. The page is checked in
headless Chromium as the run report is (tests/e2e/test_run_view.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_run_view import _chromium, _console_errors, _Page, _width_probe
from tests.support.fake_openai import FakeOpenAIServer, default_responder

pytestmark = pytest.mark.integration
LABPIPE = str(Path(sys.executable).parent / "labpipe")
GOOD = "compositional_skills/writing/freeform/tool_care_tips"
DUPLICATE = "compositional_skills/writing/freeform/tool_haiku"
BROKEN = "compositional_skills/writing/freeform/workshop_rules"


def judge_rating(rating: int):
    """A responder: schema instances for the flows, `[[rating]]` for MT-Bench's judge prompts."""

    def respond(request):
        if any("[[rating]]" in str(m.get("content")) for m in request.get("messages") or []):
            return f"The answer is adequate. Rating: [[{rating}]]"
        return default_responder(request)

    return respond


def review(taxonomy: Path, out: Path, server: FakeOpenAIServer, tiny: Path, mt_bench: Path, *extra: str,
           cache: Path | None = None):  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"LABPIPE_CACHE": str(cache)} if cache else {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    args = [
        LABPIPE, "review", "--taxonomy", str(taxonomy), "--ref", "contrib/new-leaves", "--base", "main",
        "--out", str(out), "--base-model", str(tiny), "--teacher", server.base_url, "--teacher-model",
        server.model, "--no-generation-gate", "--critique-profile", "smoke", "--response-format", "json_schema",
        "--questions", str(mt_bench), "--max-new-tokens", "16", "--known-questions", "2", *extra,
    ]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory, tiny_model, shared_data):
    from labpipe.taxonomy.sample import prepare_sample_taxonomy

    root = tmp_path_factory.mktemp("review")
    taxonomy = prepare_sample_taxonomy(root / "sample", contributor=True)
    cache = root / "cache"  # both reviews' LABPIPE_CACHE: the shared generation cache is under it
    with FakeOpenAIServer(judge_rating(3)) as server:
        proc = review(taxonomy, root / "out", server, tiny_model, shared_data / "mt_bench", cache=cache)
        sent = list(server.requests)
        server.reset_counters()
        again = review(taxonomy, root / "again", server, tiny_model, shared_data / "mt_bench", cache=cache)
        resent = list(server.requests)
    return root, proc, sent, again, resent


def test_three_leaves_pass_warn_fail_and_exit_1(reviewed):
    root, proc, *_ = reviewed
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    doc = json.loads((root / "out" / "review.json").read_text())
    verdicts = {leaf["leaf_id"]: leaf["verdict"] for leaf in doc["leaves"]}
    assert verdicts == {GOOD: "pass", DUPLICATE: "warn", BROKEN: "fail"}
    assert doc["totals"] | {"wall_time_s": 0} == doc["totals"] | {
        "leaves": 3, "pass": 1, "warn": 1, "fail": 1, "wall_time_s": 0}  # fmt: skip
    leaves = {leaf["leaf_id"]: leaf for leaf in doc["leaves"]}

    dup = leaves[DUPLICATE]["overlap"]
    assert {h["of"].rsplit("#", 1)[0] for h in dup["near_duplicates"]} == {
        "compositional_skills/writing/freeform/haiku"
    }
    assert len(dup["near_duplicates"]) == 3 and len(dup["contradictions"]) == 1
    assert dup["contradictions"][0]["question"] == "Write a haiku about a paintbrush."
    assert any(
        "near-duplicates of compositional_skills/writing/freeform/haiku" in r
        for r in leaves[DUPLICATE]["reasons"]
    )

    broken = leaves[BROKEN]
    wheres = {p["where"] for p in broken["problems"] if p["severity"] == "error"}
    assert wheres == {f"{BROKEN}/qna.yaml:5:3", f"{BROKEN}/qna.yaml:10:5"}  # located: file:line:column
    assert broken["sample"] == {} and broken["cost"] == {}  # nothing is paid for a broken leaf

    good = leaves[GOOD]
    assert good["reasons"] == ["no problem found"]
    assert good["overlap"]["compared_leaves"] == 4 and good["overlap"]["near_duplicates"] == []
    sample = good["sample"]
    assert (
        sample["first_step_requests"] == 2
        and sample["generated"] > 0
        and sample["kept"] == sample["generated"]
    )
    assert sample["teacher_requests_sent"] == sample["teacher_requests"] > 0
    assert good["known"]["asked"].startswith("the base model") and good["known"]["mean_score"] == 3.0
    assert good["cost"]["planned_teacher_requests"] == 66  # freeform flow: 6 + 6x5 + 6x5 requests
    assert good["cost"]["planned_tokens"] > 0


def test_markdown_is_a_short_pull_request_comment(reviewed):
    root, proc, *_ = reviewed
    md = (root / "out" / "review.md").read_text()
    assert md in proc.stdout
    assert len(md) < 3000 and md.count("\n") < 25
    assert "**1 pass, 1 warn, 1 fail** · exit code 1" in md
    assert f"| `{BROKEN}` | ❌ fail |" in md and f"`{BROKEN}/qna.yaml:10:5`" in md


def test_a_second_review_sends_nothing_the_first_paid_for(reviewed):
    root, _, sent, again, resent = reviewed
    assert again.returncode == 1
    doc = json.loads((root / "again" / "review.json").read_text())
    assert doc["totals"]["teacher_sent"] == 0 and doc["totals"]["judge_sent"] == 0
    assert doc["totals"]["teacher_reused"] > 0
    flows = [r for r in sent if "response_format" in r]  # teacher and critique requests (schemas)
    assert flows and not [r for r in resent if "response_format" in r]


def test_fail_on_warn_and_already_known_by_an_endpoint(tmp_path, tiny_model, shared_data):
    """--known-model: the production model behind an endpoint (e.g. KServe) answers instead of a local copy."""
    from labpipe.taxonomy.sample import prepare_sample_taxonomy

    taxonomy = prepare_sample_taxonomy(tmp_path / "sample", contributor=True)
    with FakeOpenAIServer(judge_rating(9)) as server:
        proc = review(taxonomy, tmp_path / "out", server, tiny_model, shared_data / "mt_bench", "--leaf", GOOD,
                      "--fail-on-warn", "--known-model", server.base_url, "--known-model-name", server.model)  # fmt: skip
        asked = [r["messages"][-1]["content"] for r in server.requests if r.get("model") == server.model]
        endpoint = f"{server.base_url} {server.model}"
    assert proc.returncode == 1, proc.stderr[-3000:]
    [leaf] = json.loads((tmp_path / "out" / "review.json").read_text())["leaves"]
    assert leaf["verdict"] == "warn" and leaf["known"]["mean_score"] == 9.0
    assert leaf["reasons"][0].startswith(f"already known: {endpoint} scores 9.0/10")
    # the endpoint answered the first --known-questions (2) seed questions, and no other
    assert sum(q == "How should I store a handsaw between jobs?" for q in asked) == 1
    assert not any(q.startswith("How do I keep wooden tool handles") for q in asked)


def test_review_page_in_headless_chromium(reviewed):
    root, *_ = reviewed
    page_file = root / "out" / "review.html"
    dom = _chromium("--dump-dom", page_file.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console_errors(dom.stderr) == []
    page = _Page()
    page.feed(dom.stdout)
    assert page.urls == [] and "script" not in page.tags and "link" not in page.tags  # self-contained
    ids = page.ids
    assert ids["review-ref"] == "contrib/new-leaves"
    assert (ids["count-pass"], ids["count-warn"], ids["count-fail"], ids["exit-code"]) == ("1", "1", "1", "1")
    assert ids["overall"] == "fail"
    for leaf in (GOOD, DUPLICATE, BROKEN):
        assert f"leaf-{leaf}" in ids
    assert "warn" in ids[f"leaf-{DUPLICATE}"] and f"{BROKEN}/qna.yaml:10:5" in dom.stdout
    artifacts = Path(os.environ.get("LABPIPE_TEST_ARTIFACTS", Path(__file__).resolve().parents[3] / ".ci-cache" /
                                    "test-artifacts"))  # fmt: skip
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "review-1280.png"
    shot.unlink(missing_ok=True)
    taken = _chromium("--window-size=1280,3000", f"--screenshot={shot}", page_file.as_uri())
    assert taken.returncode == 0 and shot.stat().st_size > 10_000, taken.stderr[-2000:]
    pdf = artifacts / "review.pdf"
    printed = _chromium("--no-pdf-header-footer", f"--print-to-pdf={pdf}", page_file.as_uri())
    assert printed.returncode == 0, printed.stderr[-2000:]
    from pypdf import PdfReader

    assert "contrib/new-leaves" in PdfReader(pdf).pages[0].extract_text()
    probe = _chromium("--window-size=1280,900", "--dump-dom", _width_probe(page_file).as_uri())
    import re

    found = re.search(r'data-scroll-width="(\d+)"', probe.stdout)
    assert found and int(found.group(1)) <= 1280, probe.stdout[-300:]
