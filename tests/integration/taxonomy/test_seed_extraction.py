"""Seed extraction end to end on real leaves and real knowledge documents (../shared/data), with the
document repositories rebuilt as local git repositories and document.repo/commit rewritten to them."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from labpipe.errors import UserError
from labpipe.taxonomy.chunking import token_counter
from labpipe.taxonomy.stage import (
    SeedExtractionConfig,
    TaxonomyDiffConfig,
    run_seed_extraction,
    run_taxonomy_diff,
)
from tests.unit.taxonomy.gitscenario import (
    commit,
    documents_repo,
    git,
    init_repo,
    knowledge_yaml,
    replace_tree,
    scenario_repo,
    write_leaf,
)

SUMMIT = "juliadenham_Summit_knowledge"
OLD, NEW = "0a1f2672b9b90582e6115333e3ed62fd628f1c0f", "5f7158a5ce83c4ff493bfe341fe31ecad64ff697"
MBTA = ("nathan-weinberg_taxonomy-knowledge", "3cfe8dfe00f97cbb3d2c5f917e3cd010b48b1563")


@pytest.fixture(scope="module")
def s2(shared_data, tmp_path_factory):
    """Scenario S2 (a contributor branch with three knowledge leaves on two document repositories)."""
    base = tmp_path_factory.mktemp("s2")
    summit = base / "summit"
    init_repo(summit)
    local = {}
    for upstream in (OLD, NEW):  # both upstream commits, as two commits of one local repository
        replace_tree(summit, shared_data / "taxonomy" / "documents" / SUMMIT / upstream)
        local[upstream] = commit(summit, upstream)
    mbta_commit = documents_repo(shared_data, *MBTA, base / "mbta")
    rewrite = {
        "https://github.com/juliadenham/Summit_knowledge.git": f"file://{summit}",
        "https://github.com/juliadenham/Summit_knowledge": f"file://{summit}",
        "https://github.com/nathan-weinberg/taxonomy-knowledge": str(base / "mbta"),
        OLD: local[OLD],
        NEW: local[NEW],
        MBTA[1]: mbta_commit,
    }
    repo = scenario_repo(shared_data, "S2_pr1377_contributor_branch", base / "taxonomy", rewrite)
    return {"taxonomy": repo, "summit": summit, "local": local}


def run_both(taxonomy, out, base="main", tokenizer="", chunk_tokens=400, ref=""):
    diff_meta = run_taxonomy_diff(
        TaxonomyDiffConfig(taxonomy=str(taxonomy), taxonomy_ref=ref, out=str(out / "diff"), base=base)
    )
    seed_meta = run_seed_extraction(
        SeedExtractionConfig(
            diff=str(out / "diff"),
            out=str(out / "seeds.jsonl"),
            tokenizer=tokenizer,
            chunk_tokens=chunk_tokens,
        )
    )
    records = [json.loads(line) for line in (out / "seeds.jsonl").read_text().splitlines()]
    return diff_meta, seed_meta, {r["leaf_id"]: r for r in records}


def test_every_kind_with_knowledge_documents_from_local_repositories(s2, tmp_path, tiny_model):
    diff_meta, seed_meta, records = run_both(
        s2["taxonomy"], tmp_path, tokenizer=str(tiny_model), chunk_tokens=256
    )
    assert diff_meta["leaves"] == 7 and diff_meta["taxonomy_commit"] == git(
        s2["taxonomy"], "rev-parse", "HEAD"
    )
    assert diff_meta["merge_base"] == git(s2["taxonomy"], "rev-parse", "main")
    assert seed_meta["records"] == 7 and seed_meta["leaves_knowledge"] == 3
    assert {r["kind"] for r in records.values()} == {"knowledge", "grounded_skill", "freeform_skill"}

    chickadee = records["knowledge/science/animals/birds/black_capped_chickadee"]
    assert chickadee["document"] == {
        "repo": f"file://{s2['summit']}",
        "commit": s2["local"][NEW],
        "patterns": ["chickadee.md"],
        "files": ["chickadee.md"],
    }
    assert len(chickadee["seed_examples"]) >= 15 and all("context" in e for e in chickadee["seed_examples"])
    count = token_counter(str(tiny_model))
    assert chickadee["chunks"] and all(
        0 < c["n_tokens"] <= 256 and c["n_tokens"] == count(c["text"]) for c in chickadee["chunks"]
    )
    assert "black-capped chickadee" in " ".join(c["text"] for c in chickadee["chunks"])
    phoenix = records["knowledge/science/astronomy/constellations/phoenix"]
    assert phoenix["document"]["commit"] == s2["local"][OLD]  # the older commit of the same repository

    grounded = next(r for r in records.values() if r["kind"] == "grounded_skill")
    assert all(set(e) == {"question", "answer", "context"} for e in grounded["seed_examples"])
    freeform = next(r for r in records.values() if r["kind"] == "freeform_skill")
    assert (
        all(set(e) == {"question", "answer"} for e in freeform["seed_examples"])
        and freeform["task_description"]
    )
    for leaf_id, record in records.items():
        assert len(record["leaf_digest"]) == 64 and record["leaf_id"] == leaf_id


def test_documents_are_cached_by_repo_and_commit(s2, tmp_path):
    run_both(s2["taxonomy"], tmp_path / "a")
    moved = tmp_path / "gone"
    shutil.move(s2["summit"], moved)  # the repository disappears: the cache still serves both commits
    try:
        _, meta, _ = run_both(s2["taxonomy"], tmp_path / "b")
        assert meta["leaves_knowledge"] == 3
    finally:
        shutil.move(moved, s2["summit"])


def test_taxonomy_from_a_git_url_at_a_ref(s2, tmp_path):
    diff_meta, _, records = run_both(f"file://{s2['taxonomy']}", tmp_path, base="origin/main", ref="feature")
    assert diff_meta["taxonomy_commit"] == git(s2["taxonomy"], "rev-parse", "feature") and len(records) == 7


def test_pdf_document(shared_data, tmp_path):
    commit_id = documents_repo(
        shared_data,
        "jjasghar_instructlab-knowledge-docs",
        "16249a3e31dd7144c946d5bdecc18cacc1324cd2",
        tmp_path / "docs",
    )
    write_leaf(
        tmp_path / "t",
        "knowledge/budget",
        knowledge_yaml(str(tmp_path / "docs"), commit_id, ("source_docs/*.pdf",)),
    )
    _, meta, records = run_both(tmp_path / "t", tmp_path, base="empty", chunk_tokens=500)
    record = records["knowledge/budget"]
    assert record["document"]["files"] == ["source_docs/budget_fy2024.pdf"] and meta["chunks"] > 10
    assert "Budget" in " ".join(c["text"] for c in record["chunks"][:5])


def test_unreachable_document_repo_names_leaf_and_repo(shared_data, tmp_path):
    """S3's finance leaves point at a repository that cannot be cloned offline (its document block, in a
    leaf that is otherwise valid; the real leaf also breaks lint rules, tested elsewhere)."""
    src = shared_data / "taxonomy" / "scenarios" / "S3_pr1430_spaces_and_foundational" / "head"
    leaf = (
        "knowledge/finance/Financial Contracts & Derivatives Legal Documentation/ISDA 2002 Master Agreement"
    )
    doc = yaml.safe_load((src / leaf / "qna.yaml").read_text())["document"]
    write_leaf(tmp_path / "t", leaf, knowledge_yaml(doc["repo"], doc["commit"], tuple(doc["patterns"])))
    run_taxonomy_diff(
        TaxonomyDiffConfig(taxonomy=str(tmp_path / "t"), out=str(tmp_path / "diff"), base="empty")
    )
    with pytest.raises(UserError) as err:
        run_seed_extraction(SeedExtractionConfig(diff=str(tmp_path / "diff"), out=str(tmp_path / "s.jsonl")))
    (p,) = err.value.problems
    assert p.rule == "document-repo" and p.field == "document.repo" and leaf in p.message
    assert "https://github.com/madalin312/apollo_documents" in p.message and "offline" in p.fix
    assert p.where.startswith(f"{leaf}/qna.yaml:") and not (tmp_path / "s.jsonl").exists()


def test_missing_commit_and_unmatched_patterns_are_both_reported(shared_data, tmp_path):
    commit_id = documents_repo(shared_data, *MBTA, tmp_path / "docs")
    write_leaf(tmp_path / "t", "knowledge/a", knowledge_yaml(str(tmp_path / "docs"), "0" * 40))
    write_leaf(
        tmp_path / "t", "knowledge/b", knowledge_yaml(str(tmp_path / "docs"), commit_id, ("nothing/*.md",))
    )
    run_taxonomy_diff(
        TaxonomyDiffConfig(taxonomy=str(tmp_path / "t"), out=str(tmp_path / "diff"), base="empty")
    )
    with pytest.raises(UserError) as err:
        run_seed_extraction(SeedExtractionConfig(diff=str(tmp_path / "diff"), out=str(tmp_path / "s.jsonl")))
    by_rule = {p.rule: p for p in err.value.problems if p.severity == "error"}
    assert f"commit {'0' * 40} does not exist" in by_rule["document-commit"].message
    assert by_rule["document-commit"].where.startswith("knowledge/a/qna.yaml:")
    assert "match no Markdown" in by_rule["document-patterns"].message
    assert by_rule["document-patterns"].where.startswith("knowledge/b/qna.yaml:")


def test_invalid_changed_leaf_stops_the_diff_stage(shared_data, tmp_path):
    repo = scenario_repo(shared_data, "S3_pr1430_spaces_and_foundational", tmp_path / "t")
    with pytest.raises(UserError) as err:
        run_taxonomy_diff(TaxonomyDiffConfig(taxonomy=str(repo), out=str(tmp_path / "diff"), base="main"))
    assert {"syntax", "attribution", "line-length"} <= {p.rule for p in err.value.problems}
    assert not (tmp_path / "diff").exists()


def test_deleted_leaves_are_listed_never_extracted(shared_data, tmp_path):
    repo = scenario_repo(shared_data, "X1_deletion_only_reorg", tmp_path / "t")
    diff_meta, seed_meta, records = run_both(repo, tmp_path)
    assert diff_meta["leaves_deleted"] == 136 and diff_meta["leaves"] == 0 and records == {}
    doc = json.loads((tmp_path / "diff" / "diff.json").read_text())
    assert (
        all(e["status"] == "deleted" for e in doc["leaves"]) and not (tmp_path / "diff" / "leaves").exists()
    )


def test_an_s3_base_model_is_read_for_its_tokenizer_files_only(
    s2, tmp_path, tiny_model, s3_env, monkeypatch
):
    import boto3

    from labpipe import storage
    from labpipe.models.loading import TOKENIZER_FILES

    boto3.client("s3").create_bucket(Bucket="seed-tokenizer")
    uri = "s3://seed-tokenizer/models/tiny"
    storage.upload_dir(tiny_model, uri)
    weights = [p.name for p in tiny_model.iterdir() if p.suffix == ".safetensors"]
    assert weights  # the prefix holds the weights too
    session = boto3.session.Session()
    fetched: list[str] = []
    session.events.register(
        "before-parameter-build.s3.GetObject", lambda params, **_: fetched.append(params["Key"])
    )
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)  # storage's clients come from this session

    _, meta, records = run_both(s2["taxonomy"], tmp_path / "s3", tokenizer=uri, chunk_tokens=256)
    names = {key.rsplit("/", 1)[-1] for key in fetched}
    assert names == {p.name for p in tiny_model.iterdir() if p.name in TOKENIZER_FILES}
    assert not set(weights) & names and "config.json" in names and "tokenizer.json" in names
    _, _, local = run_both(s2["taxonomy"], tmp_path / "local", tokenizer=str(tiny_model), chunk_tokens=256)
    assert records == local  # the same chunks as with the model directory itself
