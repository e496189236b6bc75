"""The review of knowledge leaves (library call): the document repository and commit resolve, the chunks at the
base model's tokenizer, the faithfulness judge's acceptance share, the planned requests; and a leaf whose
document commit does not exist fails, located at `document.commit`. Teacher and judge: the fake
OpenAI-compatible server (the point is labpipe's bookkeeping, not data quality); base model: the tiny model."""

from __future__ import annotations

import json
import math

import pytest

from labpipe.llm.options import ClientOptions
from labpipe.review.stage import ReviewConfig, run_review
from tests.support.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.integration
LEAF = "knowledge/community/tool_library"
SAMPLE_DOCUMENT_COMMIT = "653f07fc72656f3a8dd4c561386834a03d947287"
MISSING = "deadbeef" * 5  # a well-formed commit id that is not in the document repository


def _config(taxonomy, out, server, tiny, **kw):
    return ReviewConfig(
        taxonomy=str(taxonomy), out=str(out), base_model=str(tiny),
        teacher=ClientOptions(server.base_url, server.model, response_format="json_schema"),
        judge=ClientOptions(server.base_url, server.model, response_format="json_schema"), generation_gate=False,
        critique_profile="smoke", known=False, chunk_tokens=200, **kw,
    )  # fmt: skip


def test_knowledge_leaf_document_chunks_faithfulness_and_cost(tmp_path, tiny_model):
    from labpipe.generation.flow import load_flows
    from labpipe.generation.shards import requests_per_item
    from labpipe.taxonomy.sample import prepare_sample_taxonomy

    taxonomy = prepare_sample_taxonomy(tmp_path / "sample")
    with FakeOpenAIServer() as server:
        totals = run_review(
            _config(taxonomy, tmp_path / "out", server, tiny_model, base="empty", leaves=[LEAF])
        )
    assert totals["exit_code"] == 0 and totals["leaves"] == 1
    [leaf] = json.loads((tmp_path / "out" / "review.json").read_text())["leaves"]
    assert leaf["kind"] == "knowledge" and leaf["verdict"] == "pass", leaf["reasons"]
    doc = leaf["document"]
    assert doc["resolved"] and doc["commit"] == SAMPLE_DOCUMENT_COMMIT and doc["files"] == ["tool_library.md"]
    assert doc["chunks"] > 1 and doc["tokenizer"] == str(tiny_model)  # 200-token chunks at the tiny tokenizer
    sample = leaf["sample"]
    assert sample["teacher_requests"] == 2  # sample_size 2: one chunk x the first two seed contexts
    faith = sample["faithfulness"]
    assert faith["judged"] == sample["generated"] > 0 and 0 <= faith["accepted"] <= faith["judged"]
    assert faith["share"] == round(faith["accepted"] / faith["judged"], 3)
    per_item = requests_per_item(load_flows()["knowledge"])
    assert leaf["cost"]["planned_teacher_requests"] == round(per_item * doc["chunks"] * 5)  # 5 seed contexts
    assert math.isclose(
        leaf["cost"]["planned_tokens"],
        leaf["cost"]["planned_teacher_requests"] * leaf["cost"]["tokens_per_request"],
        rel_tol=0.01,
    )


def test_unknown_document_commit_fails_located(tmp_path, tiny_model):
    from labpipe.taxonomy.sample import prepare_sample_taxonomy

    taxonomy = prepare_sample_taxonomy(tmp_path / "sample")
    qna = taxonomy / LEAF / "qna.yaml"
    qna.write_text(qna.read_text().replace(SAMPLE_DOCUMENT_COMMIT, MISSING))  # the work tree: modified
    with FakeOpenAIServer() as server:
        totals = run_review(_config(taxonomy, tmp_path / "out", server, tiny_model, base="main"))
        assert server.total_requests == 0  # nothing is paid for a leaf that fails before the sample
    assert totals["exit_code"] == 1 and totals["fail"] == 1
    [leaf] = json.loads((tmp_path / "out" / "review.json").read_text())["leaves"]
    assert leaf["status"] == "modified" and leaf["verdict"] == "fail"
    line = next(n for n, text in enumerate(qna.read_text().splitlines(), 1) if MISSING in text)
    assert [p["where"].rsplit(":", 1)[0] for p in leaf["problems"]] == [f"{LEAF}/qna.yaml:{line}"]
    assert leaf["reasons"][0].startswith("document does not resolve")


def test_base_production_diffs_against_production_and_asks_the_production_model(
    tmp_path, tiny_model, monkeypatch, shared_data
):
    """base=production (the default) against a real MLflow registry (SQLite store): the diff base is the taxonomy
    commit tagged on NAME@production, and the production model (logged as artifacts of the publish run, so
    downloaded) answers the seed questions."""
    from mlflow.tracking import MlflowClient

    from labpipe.registry import production
    from labpipe.registry.publish import publish_model
    from labpipe.taxonomy import gitrepo
    from labpipe.taxonomy.sample import CONTRIBUTOR_BRANCH, prepare_sample_taxonomy

    from .test_review_branch import GOOD, judge_rating

    monkeypatch.chdir(tmp_path)  # the SQLite store's artifacts go under ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    taxonomy = prepare_sample_taxonomy(tmp_path / "sample", contributor=True)
    version = publish_model(str(tiny_model), {"publish": True}, "labpipe-model", tracking_uri=uri)
    main = gitrepo.resolve("main", taxonomy)
    MlflowClient(tracking_uri=uri).set_model_version_tag(
        "labpipe-model", version, production.TAXONOMY_COMMIT_TAG, main
    )
    with FakeOpenAIServer(judge_rating(9)) as server:
        config = _config(taxonomy, tmp_path / "out", server, tiny_model, ref=CONTRIBUTOR_BRANCH, leaves=[GOOD],
                         tracking_uri=uri, questions=str(shared_data / "mt_bench"), max_new_tokens=8, known_questions=1)  # fmt: skip
        config.known = True
        totals = run_review(config)
    doc = json.loads((tmp_path / "out" / "review.json").read_text())
    assert (
        doc["base"] == "production" and doc["base_used"] == main and doc["production"]["version"] == version
    )
    [leaf] = doc["leaves"]
    assert leaf["known"]["asked"] == f"labpipe-model version {version} (taxonomy commit {main[:12]})"
    assert leaf["verdict"] == "warn" and totals["exit_code"] == 0  # warn exits 0 unless --fail-on-warn
