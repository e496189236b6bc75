"""A real `labpipe run` as a person (or CI) sees it: the plain stage view, the summary, and the report page
opened in headless Chromium (Debian's `chromium`; .ci/run installs it).

The screenshot is kept as a test artifact in $LABPIPE_TEST_ARTIFACTS (default .ci-cache/test-artifacts/).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from labpipe.runs import tracking

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LABPIPE = str(Path(sys.executable).parent / "labpipe")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                  "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_data):
    workdir = tmp_path_factory.mktemp("run-view")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["LABPIPE_MT_BENCH_DATA"] = str(shared_data / "mt_bench")
    proc = subprocess.run([LABPIPE, "run", "--workdir", str(workdir)], capture_output=True, text=True, env=env,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir, proc


def _stages():
    from labpipe.pipelines.runner import pipeline_stages

    return pipeline_stages()


def test_plain_view_one_line_per_stage_transition(run):
    workdir, proc = run
    lines = [line.split("] ", 1)[1] for line in proc.stdout.splitlines() if re.match(r"\[\s*\d+s\] ", line)]
    seen = [line.split(" in ")[0] if "done" in line else line for line in lines]
    # tasks under a branch that did not run are skipped: the gate's other branch, "nothing to do", and the
    # GPU evaluation branch (evaluation_engine=vllm) with its own gate
    branches = {"publish-model", "run-report", "run-report-2", "nothing-to-do", "mt-bench-eval-gpu", "publish-model-2",
                "run-report-3", "run-report-4"}
    expected, ran, labels = [], [], set()
    for stage in _stages():
        if stage.task in branches and f"▶ {stage.label}: started" not in seen:
            continue
        if stage.label in labels:  # the same step in the other evaluation branch: only one of the two runs
            continue
        labels.add(stage.label)
        expected += [f"▶ {stage.label}: started", f"✓ {stage.label}: done"]
        ran.append(stage)
    shown = [line for line in seen if not line.endswith(": skipped")]
    # one line per transition; independent tasks (the SFT pods' resources) may start before an earlier stage
    assert sorted(shown) == sorted(expected)
    for stage in ran:
        assert shown.index(f"▶ {stage.label}: started") < shown.index(f"✓ {stage.label}: done")
    numbered = [line for line in shown if re.match(r"▶ \d ", line)]
    assert numbered == sorted(numbered, key=lambda line: int(line[2]))  # the numbered stages in their order
    assert len(seen) - len(expected) == len(_stages()) - len(ran)  # every other task: one "skipped" line
    figures = {line.split(": done")[0][2:]: line.split("  ", 1)[1] for line in lines if ": done" in line}
    assert re.fullmatch(r"\d+ changed leaves .*", figures["1 taxonomy diff"])
    assert re.fullmatch(r"\d+/\d+ kept \(\d+%\); knowledge \d+, skills \d+", figures["4 critique filtering"])
    assert re.fullmatch(r"knowledge: \d+ steps, loss [\d.]+ → [\d.]+", figures["5 knowledge SFT"])
    assert "Executing task" not in proc.stdout and "executor_input" not in proc.stdout  # kfp.local's output: logs
    for stage in ran:
        assert (workdir / "logs" / f"{stage.task}.log").stat().st_size > 0


def test_summary_names_scores_gate_report_and_commands(run):
    workdir, proc = run
    tail = proc.stdout[proc.stdout.index("pipeline finished in"):]
    assert re.search(r"MT-Bench   candidate [\d.]+ \| base [\d.]+ \| production (none|[\d.]+)", tail)
    assert re.search(r"gate       (PUBLISH|HOLD)\n\s+- candidate", tail)
    assert tail.rstrip().splitlines()[-1] == f"  report     {workdir / 'report.html'}"  # ends with the page
    assert "labpipe lineage --pipeline-run " in tail and "mlflow ui --backend-store-uri sqlite:///" in tail


class _Page(HTMLParser):
    """Ids -> text, and every URL-bearing attribute (the page must need no network)."""

    def __init__(self):
        super().__init__()
        self.ids: dict[str, str] = {}
        self.urls: list[str] = []
        self.tags: set[str] = set()
        self._open: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attrs = dict(attrs)
        self.urls += [v for k, v in attrs.items() if k in ("src", "href", "srcset", "data") and v]
        if "id" in attrs:
            self.ids[attrs["id"]] = ""
            self._open.append(attrs["id"])
        elif self._open:
            self._open.append("")

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        for ident in self._open:
            if ident:
                self.ids[ident] += data


def _chromium(*args: str) -> subprocess.CompletedProcess:
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("chromium is not installed: apt-get install -y chromium (.ci/run does it)")
    return subprocess.run(["/usr/bin/chromium", *CHROMIUM_FLAGS, *args], capture_output=True, text=True,
                          timeout=120)


def _console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_console_error_detection_works(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>console.error('deliberate')</script></body></html>")
    assert any("deliberate" in e for e in _console_errors(_chromium("--dump-dom", page.as_uri()).stderr))


def test_report_page_in_headless_chromium(run):
    workdir, _ = run
    report = workdir / "report.html"
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(tracking.DEFAULT_EXPERIMENT)
    [parent] = client.search_runs([exp.experiment_id], filter_string=f"tags.`{tracking.ROLE_TAG}` = 'pipeline'")
    [evaluation] = client.search_runs([exp.experiment_id], filter_string="tags.`labpipe.stage` = 'mt_bench_eval'")
    [critique] = client.search_runs([exp.experiment_id], filter_string="tags.`labpipe.stage` = 'critique_filter'")
    assert "report.html" in [a.path for a in client.list_artifacts(parent.info.run_id)]  # the MLflow copy

    dom = _chromium("--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console_errors(dom.stderr) == []
    page = _Page()
    page.feed(dom.stdout)
    assert page.urls == [] and "script" not in page.tags and "link" not in page.tags  # self-contained
    ids = page.ids
    assert ids["pipeline-run-id"] == parent.data.tags[tracking.PIPELINE_RUN_TAG]
    assert ids["score-candidate"] == f"{evaluation.data.metrics['mt_bench.candidate.overall']:.2f}"
    assert ids["score-base"] == f"{evaluation.data.metrics['mt_bench.base.overall']:.2f}"
    assert ids["kept-total"] == f"{critique.data.metrics['kept']:.0f} / {critique.data.metrics['generated']:.0f}"
    gate = json.loads(parent.data.tags["lineage.mt_bench_eval.metadata.publish"].lower())
    assert ids["gate-decision"] == ("publish" if gate else "hold")
    for section in ("stages", "funnel", "losses", "mt-bench", "branch", "gate", "lineage"):
        assert section in ids, section
    assert re.fullmatch(r"[\d.]+ → [\d.]+", ids["loss-knowledge"])
    taxonomy_commit = parent.data.tags["lineage.taxonomy_diff.metadata.taxonomy_commit"]
    assert taxonomy_commit in dom.stdout  # the lineage chain carries the digests

    artifacts = Path(os.environ.get("LABPIPE_TEST_ARTIFACTS", REPO / ".ci-cache" / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "run-report-1280.png"
    shot.unlink(missing_ok=True)
    taken = _chromium("--window-size=1280,4000", f"--screenshot={shot}", report.as_uri())
    assert taken.returncode == 0 and shot.stat().st_size > 10_000, taken.stderr[-2000:]
    # No sideways scrolling at 1280 px: the document is no wider than the viewport.
    pdf = artifacts / "run-report.pdf"  # printable: the browser's own print path
    printed = _chromium("--no-pdf-header-footer", f"--print-to-pdf={pdf}", report.as_uri())
    assert printed.returncode == 0, printed.stderr[-2000:]
    from pypdf import PdfReader

    pages = PdfReader(pdf).pages
    assert len(pages) >= 2 and ids["pipeline-run-id"] in pages[0].extract_text()
    probe = _chromium("--window-size=1280,900", "--dump-dom", _width_probe(report).as_uri())
    found = re.search(r'data-scroll-width="(\d+)"', probe.stdout)
    assert found and int(found.group(1)) <= 1280, probe.stdout[-300:]


def _width_probe(report: Path) -> Path:
    """A copy of the page with a script that records the document's scroll width in the DOM."""
    probe = report.with_name("report-width-probe.html")
    script = ("<script>document.body.setAttribute('data-scroll-width',"
              "String(document.documentElement.scrollWidth))</script>")
    probe.write_text(report.read_text().replace("</body>", script + "</body>"))
    return probe


def test_report_command_by_mlflow_run_id(run, tmp_path):
    workdir, _ = run
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(tracking.DEFAULT_EXPERIMENT)
    [stage] = client.search_runs([exp.experiment_id], filter_string="tags.`labpipe.stage` = 'skill_sft'")
    out = tmp_path / "again.html"
    proc = subprocess.run([LABPIPE, "report", stage.info.run_id, "--out", str(out), "--tracking-uri", uri],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    pipeline_run_id = stage.data.tags[tracking.PIPELINE_RUN_TAG]
    assert proc.stdout.strip() == f"report of pipeline run {pipeline_run_id}: {out}"
    assert f'id="pipeline-run-id">{pipeline_run_id}<' in out.read_text()
    missing = subprocess.run([LABPIPE, "report", "nope", "--tracking-uri", uri], capture_output=True, text=True,
                             timeout=300)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "pipeline run nope: no MLflow record" in missing.stderr


def test_pipeline_task_wrote_the_report_as_a_kfp_html_artifact(run):
    workdir, _ = run
    [job] = [p for p in (workdir / "kfp").iterdir() if p.is_dir()]
    [task] = [p for p in job.iterdir() if p.name.startswith("run-report") and (p / "report").is_file()]
    outputs = json.loads((task / "executor_output.json").read_text())
    [artifact] = outputs["artifacts"]["report"]["artifacts"]
    assert artifact["metadata"]["pipeline_run_id"] == artifact["metadata"]["pipeline_run_id"].strip() != ""
    page = (task / "report").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert f'id="pipeline-run-id">{artifact["metadata"]["pipeline_run_id"]}<' in page
