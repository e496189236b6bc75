"""The report page's HTML from recorded data: escaping, the branch table, task rows, no external resources."""

from __future__ import annotations

from labpipe.runs.lineage import Lineage
from labpipe.runs.report import RunData
from labpipe.runs.report.html import render_html


def _data() -> RunData:
    data = RunData("job-1", "abc", "FAILED", "sqlite:///x.db")
    data.tasks = [{"task": "sft", "label": "5 knowledge <SFT>", "status": "failed", "figure": "2 problem(s)",
                   "start_ms": 1_000, "end_ms": 61_000},
                  {"task": "publish-model", "label": "publish", "status": "skipped", "figure": "",
                   "start_ms": None, "end_ms": None}]
    data.branch = {"improvements": [{"leaf": "skills/haiku", "candidate": 7, "base": 5}],
                   "regressions": [{"leaf": "skills/haiku", "candidate": 3, "base": 4}],
                   "new": [{"leaf": "knowledge/tools", "candidate": 6, "base": 2}]}
    data.decision = {"publish": False, "reasons": ["candidate 4.000 is below base 5.000 (tolerance 0)"]}
    data.scores = {"candidate": {"overall": 4.0, "category.math": 3.5}, "base": {"overall": 5.0},
                   "production": {"overall": 6.0}}
    data.lineage = Lineage("job-1", "abc", "FAILED", stages={
        "taxonomy_diff": {"metadata.taxonomy_commit": "310dfb8", "outputs.diff": "/r/kfp/job/taxonomy-diff/diff"},
        "seed_extraction": {"inputs.diff": "/r/kfp/job/taxonomy-diff/diff", "outputs.seeds": "/r/kfp/job/seeds/seeds"},
    })
    return data


def test_page_escapes_and_shows_what_was_recorded():
    page = render_html(_data())
    assert "5 knowledge &lt;SFT&gt;" in page and "<SFT>" not in page
    assert '<div class="v bad" id="gate-decision">hold</div>' in page
    assert 'id="score-production">6.00<' in page
    assert "candidate 4.000 is below base 5.000" in page
    assert "improvements: 1, regressions: 1, new: 1" in page
    # per leaf: improved, regressed, new, unchanged, base mean, candidate mean
    assert ('<code>skills/haiku</code></td><td class="n">1</td><td class="n">1</td><td class="n">0</td>'
            '<td class="n">0</td><td class="n">4.50</td><td class="n">5.00</td>') in page
    assert "… stands for <code>/r/kfp/job</code>" in page and "…/taxonomy-diff/diff" in page
    assert "310dfb8" in page


def test_page_needs_no_network():
    page = render_html(_data())
    for marker in ("<script", "<link", "src=", "href=", "@import", "url("):
        assert marker not in page, marker


def test_missing_sections_say_so():
    page = render_html(RunData("job-2", "", "RUNNING", ""))
    for text in ("no critique report recorded", "no training loss recorded", "no MT-Bench scores recorded",
                 "no gate decision recorded", "no lineage recorded", "not part of this pipeline run"):
        assert text in page


def test_failures_are_on_the_page_once_each():
    """A tolerated share of failed requests is shown with its reasons; a failed stage's problems once, though
    its retried attempts (each its own FAILED stage run) recorded the same error."""
    from labpipe.runs.report import StageRecord

    data = RunData("job-3", "abc", "FAILED", "sqlite:///x.db")
    tolerated = {"failed": 1, "total": 220, "allowed_share": 0.01, "tolerated": 1,
                 "reasons": {"http": {"count": 1, "example": "http: HTTP 400: refused <by> policy"}}}  # fmt: skip
    invalid = "judge: error: evaluation-invalid [judge]: the MT-Bench evaluation is invalid (candidate: 4 of 4 …)"
    data.stages = [StageRecord("synthetic_generation", "FINISHED", 1, 2, failures=tolerated),
                   *[StageRecord("mt_bench_eval", "FAILED", 3, 4, error=invalid) for _ in range(4)]]  # fmt: skip
    page = render_html(data)
    assert "1 of 220 requests failed for good, tolerated (allowed: 1%)" in page
    assert "refused &lt;by&gt; policy" in page
    assert page.count("evaluation-invalid") == 1
