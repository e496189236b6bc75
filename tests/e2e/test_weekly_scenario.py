"""The weekly retraining scenario: three runs of the real DAG through kfp.local with identical parameters,
as a recurring run starts them (`base` and `scope` at the pipeline's defaults: production, taxonomy).

Real servers: a `mlflow server` process (registry, artifacts proxied to S3), a moto S3 endpoint (the base
model lives at s3://), the fake OpenAI-compatible teacher (its request log counts what the teacher is
paid for); the taxonomy is a git URL (a bare repository served over file://).

run 1, no production model yet: every leaf, publishes version 1 (with taxonomy commit and fingerprint)
run 2, nothing changed:          ends early (nothing-to-do branch), 0 teacher requests, no training,
                                 production still version 1
run 3, one leaf edited:          the diff names that leaf, training sets still cover every leaf, the
                                 gate compares with version 1; teacher requests only for that leaf (needs
                                 the content-keyed generation cache of branch gen-cache)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.support.servers import S3_ENV, mlflow_server, s3_server

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(1800)]  # ~11 min on 2 shared cores

MODEL_NAME = "labpipe-model"
# the parameters of the README's `labpipe schedule` example (tests/unit/test_readme_weekly.py checks it);
# everything else the scenario passes only sizes the run for a laptop or points at the test's fakes
CLUSTER_PARAMS = ("taxonomy", "base_model", "mlflow_tracking_uri", "generation_cache", "checkpoint_root")
EDITED_LEAF = "compositional_skills/writing/freeform/haiku"
MARKER = "wkly-edit"


def _git(cwd: Path, *args: str) -> str:
    from labpipe.taxonomy import gitrepo

    return gitrepo.git("-c", "user.email=t@example.invalid", "-c", "user.name=t", "-c", "commit.gpgsign=false",
                       *args, cwd=cwd).strip()


class Scenario:
    def __init__(self, root: Path, teacher, tracking_uri: str, params: dict):
        self.root, self.teacher, self.tracking_uri, self.params = root, teacher, tracking_uri, params
        self.runs = 0

    def run(self) -> dict:
        """One pipeline run; returns {task: {artifact: ProducedArtifact}} plus the teacher requests it caused."""
        from labpipe.pipelines import runner

        self.runs += 1
        self.teacher.reset_counters()
        _, artifacts = runner.run_local(dict(self.params), self.root / f"kfp-{self.runs}")
        out: dict = {}
        for art in artifacts:
            out.setdefault(art.task, {})[art.name] = art
        out["teacher_requests"] = list(self.teacher.requests)
        return out

    def production(self):
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return client.get_model_version_by_alias(MODEL_NAME, "production")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, shared_data):
    from labpipe import storage
    from labpipe.models.tiny import build_tiny_model
    from labpipe.taxonomy.sample import prepare_sample_taxonomy
    from tests.support.fake_openai import FakeOpenAIServer

    root = tmp_path_factory.mktemp("weekly")
    (root / "mlflow-srv").mkdir()
    saved = dict(os.environ)
    try:
        with s3_server() as s3_url, mlflow_server(root / "mlflow-srv", s3_endpoint=s3_url) as tracking_uri, \
                FakeOpenAIServer(model="fake-teacher") as teacher:
            os.environ.update(S3_ENV, AWS_ENDPOINT_URL=s3_url, LABPIPE_CACHE=str(root / "cache"))
            os.environ.pop("MLFLOW_TRACKING_URI", None)
            # the base model on S3; the judge is the same tiny model in-process (structured output)
            tiny = build_tiny_model(root / "tiny")
            storage.s3_client().create_bucket(Bucket="models")
            storage.s3_client().create_bucket(Bucket="labpipe-cache")
            storage.upload_dir(tiny, "s3://models/tiny")
            # the taxonomy: a work repository the "contributors" commit to, pushed to a bare one (the URL)
            work = prepare_sample_taxonomy(root / "repos")
            bare = root / "repos" / "taxonomy.git"  # beside sample-documents (the knowledge leaf's ../ repo)
            _git(root, "clone", "--quiet", "--bare", str(work), str(bare))
            _git(work, "remote", "add", "origin", str(bare))
            params = {
                "taxonomy": bare.as_uri(), "base_model": "s3://models/tiny",
                "generation_cache": "s3://labpipe-cache/generation",
                "checkpoint_root": "s3://labpipe-cache/checkpoints",
                "teacher": teacher.base_url, "teacher_model": "fake-teacher", "judge": str(tiny),
                "mlflow_tracking_uri": tracking_uri, "production_model_name": MODEL_NAME,
                "questions": str(shared_data / "mt_bench"), "max_questions": 2, "max_new_tokens": 16,
                "generation_gate": False, "critique_profile": "smoke", "samples_per_skill_leaf": 2,
                "training_preset": "smoke", "max_steps": 1, "concurrency": 8,
                "gate_tolerance": 10.0,  # the tiny model's scores are noise: the point is the comparison, made
            }
            yield Scenario(root, teacher, tracking_uri, params), work
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(root / "cache", ignore_errors=True)


def _diff(result) -> dict:
    return json.loads((Path(result["taxonomy-diff"]["diff"].uri) / "diff.json").read_text())


def _leaf_ids(result) -> set[str]:
    ids = set()
    for name in ("knowledge_set", "skills_set"):
        for line in Path(result["critique-filter"][name].uri).read_text().splitlines():
            ids.add(json.loads(line)["metadata"]["leaf_id"])
    return ids


def test_weekly_runs(scenario, capsys):
    sc, work = scenario
    every_leaf = {"knowledge/community/tool_library", "compositional_skills/grounded/extraction/action_items",
                  EDITED_LEAF}

    # run 1: nothing registered yet -> every leaf, version 1 published with what the next run compares with
    first = sc.run()
    diff = _diff(first)
    assert diff["base_used"] == "empty" and "no model registered" in diff["base_note"]
    assert {e["leaf_id"] for e in diff["leaves"]} == every_leaf
    assert first["teacher_requests"], "run 1 sent no teacher request"
    assert _leaf_ids(first) == every_leaf
    v1 = sc.production()
    assert v1.version == "1"
    assert v1.tags["labpipe.taxonomy.commit"] == diff["head_commit"] == _git(work, "rev-parse", "HEAD")
    assert v1.tags["labpipe.fingerprint"] == diff["plan"]["fingerprint"]
    assert v1.tags["labpipe.taxonomy.repo"] == sc.params["taxonomy"]
    # the checkpoints went to checkpoint_root (they outlive a killed pod), not into the Model artifact
    summary = json.loads((Path(first["sft"]["model"].uri) / "training_summary.json").read_text())
    assert summary["checkpoint_dir"].startswith("s3://labpipe-cache/checkpoints/"), summary
    assert summary["checkpoints"] and not list(Path(first["sft"]["model"].uri).glob("**/checkpoint-*"))

    # run 2: nothing changed -> the nothing-to-do branch; no teacher request, no training, production unchanged
    second = sc.run()
    assert second["teacher_requests"] == []
    assert not {"seed-extraction", "synthetic-generation", "sft", "sft-2", "mt-bench-eval"} & set(second)
    report = Path(second["nothing-to-do"]["report"].uri).read_text()
    assert "Nothing to do" in report and f"{MODEL_NAME} version 1" in report and diff["head_commit"] in report
    assert _diff(second)["plan"]["train"] is False
    assert sc.production().version == "1"

    # run 3: one leaf edited (a contributor's commit, pushed) -> that leaf changed, every leaf trained on
    qna = work / EDITED_LEAF / "qna.yaml"
    text = qna.read_text()
    qna.write_text(text.replace("about an everyday tool.", f"about a tool ({MARKER}).", 1)
                   .replace("the shelf holds at last", f"the shelf holds at last {MARKER}", 1))
    _git(work, "commit", "--quiet", "-am", "haiku: edited")
    _git(work, "push", "--quiet", "origin", "main")
    third = sc.run()
    diff3 = _diff(third)
    assert diff3["changed_leaves"] == [EDITED_LEAF]
    assert diff3["base_used"] == v1.tags["labpipe.taxonomy.commit"]
    assert {e["leaf_id"] for e in diff3["leaves"]} == every_leaf  # scope=taxonomy
    assert _leaf_ids(third) == every_leaf  # the training sets still cover the whole taxonomy
    decision = json.loads(Path(third["mt-bench-eval"]["decision"].uri).read_text())
    assert f"production is {MODEL_NAME} version 1" in decision["reasons"]
    assert decision["production"] is not None  # compared with version 1's score
    assert sc.production().version == "2"
    assert sc.production().tags["labpipe.taxonomy.commit"] == diff3["head_commit"]

    # the exit handler closed every run's MLflow parent run (the nothing-to-do run included)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=sc.tracking_uri)
    exp = client.get_experiment_by_name("labpipe")
    parents = client.search_runs([exp.experiment_id], filter_string="tags.`labpipe.role` = 'pipeline'")
    assert sorted(r.info.status for r in parents) == ["FINISHED"] * 3
    # and the registered version answers "where did this model come from"
    from labpipe.cli import main

    capsys.readouterr()
    assert main(["lineage", f"{MODEL_NAME}@production", "--tracking-uri", sc.tracking_uri]) == 0
    chain = capsys.readouterr().out
    assert diff3["head_commit"][:12] in chain and f"1 leaves: {EDITED_LEAF}" in chain, chain

    # ... and the teacher was paid only for the edited leaf: every request carries its marker
    requests = third["teacher_requests"]
    assert requests
    from labpipe.llm.structured import PROBE_PROMPT

    # the structured-output probe (one tiny request per stage) belongs to no leaf
    leaf_requests = [r for r in requests if PROBE_PROMPT not in json.dumps(r)]
    assert len(requests) - len(leaf_requests) <= 2  # at most one probe per paid stage (generation, critique)
    other = [r for r in leaf_requests if MARKER not in json.dumps(r)]
    assert not other, f"{len(other)} of {len(requests)} teacher requests were for unchanged leaves"
