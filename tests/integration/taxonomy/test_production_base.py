"""base=production against a real MLflow registry (SQLite store) and real git repositories: the diff is taken
against the taxonomy commit recorded on the production version, the plan says "nothing to do" only when
the fingerprint is unchanged, scope decides what is trained on, and a shallow clone lacking the commit is
an error that says so."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from labpipe.errors import UserError
from labpipe.registry import production
from labpipe.taxonomy import gitrepo
from labpipe.taxonomy.sample import prepare_sample_taxonomy
from labpipe.taxonomy.stage import TaxonomyDiffConfig, run_taxonomy_diff

pytestmark = [pytest.mark.integration]
NAME = "labpipe-model"
HAIKU = "compositional_skills/writing/freeform/haiku"


def _git(cwd: Path, *args: str) -> str:
    return gitrepo.git("-c", "user.email=t@example.invalid", "-c", "user.name=t", "-c", "commit.gpgsign=false",
                       *args, cwd=cwd).strip()


@pytest.fixture
def setup(tmp_path):
    work = prepare_sample_taxonomy(tmp_path / "repos")
    bare = tmp_path / "repos" / "taxonomy.git"
    _git(tmp_path, "clone", "--quiet", "--bare", str(work), str(bare))
    _git(work, "remote", "add", "origin", str(bare))
    return work, bare, f"sqlite:///{tmp_path / 'mlflow.db'}"


def _publish(uri: str, tags: dict[str, str]) -> str:
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        client.create_registered_model(NAME)
    except Exception:
        pass
    version = client.create_model_version(NAME, source="s3://models/x", tags=tags)
    client.set_registered_model_alias(NAME, "production", version.version)
    return version.version


def _diff(tmp_path: Path, taxonomy: str, uri: str, **kw) -> tuple[dict, dict]:
    out = tmp_path / f"diff-{len(list(tmp_path.glob('diff-*')))}"
    meta = run_taxonomy_diff(TaxonomyDiffConfig(taxonomy=taxonomy, out=str(out), base="production",
                                                tracking_uri=uri, production_model_name=NAME, **kw))
    return meta, json.loads((out / "diff.json").read_text())


def test_first_run_takes_every_leaf_and_says_so(setup, tmp_path):
    work, bare, uri = setup
    meta, doc = _diff(tmp_path, bare.as_uri(), uri, scope="changed")
    assert meta["train"] is True and meta["leaves"] == 3 and doc["base_used"] == "empty"
    assert "no model registered as labpipe-model@production" in doc["base_note"]
    assert "no production model registered yet" in doc["plan"]["reason"]


def test_unchanged_since_production_is_nothing_to_do_and_force_retrains(setup, tmp_path):
    work, bare, uri = setup
    meta, doc = _diff(tmp_path, bare.as_uri(), uri, scope="taxonomy")
    _publish(uri, {production.TAXONOMY_COMMIT_TAG: doc["head_commit"],
                   production.FINGERPRINT_TAG: doc["plan"]["fingerprint"],
                   production.FINGERPRINT_PARTS_TAG: json.dumps(doc["plan"]["parts"])})
    meta, doc2 = _diff(tmp_path, bare.as_uri(), uri, scope="taxonomy")
    assert meta["train"] is False and meta["leaves_changed"] == 0
    assert doc2["plan"]["reason"].startswith("nothing to do") and "version 1" in doc2["plan"]["reason"]
    assert doc2["base_used"] == doc["head_commit"]
    # what production was trained on is unchanged, but another training preset changes the fingerprint
    meta, doc3 = _diff(tmp_path, bare.as_uri(), uri, scope="taxonomy",
                       inputs=production.ModelInputs(training_preset="smoke"))
    assert meta["train"] is True and doc3["plan"]["changed"] == ["training"]
    meta, _ = _diff(tmp_path, bare.as_uri(), uri, scope="taxonomy", force=True)
    assert meta["train"] is True


def test_one_leaf_edited_scope_taxonomy_and_changed(setup, tmp_path):
    work, bare, uri = setup
    _, doc = _diff(tmp_path, bare.as_uri(), uri, scope="taxonomy")
    _publish(uri, {production.TAXONOMY_COMMIT_TAG: doc["head_commit"],
                   production.FINGERPRINT_TAG: doc["plan"]["fingerprint"],
                   production.FINGERPRINT_PARTS_TAG: json.dumps(doc["plan"]["parts"])})
    qna = work / HAIKU / "qna.yaml"
    qna.write_text(qna.read_text().replace("everyday tool.", "everyday tool, edited.", 1))
    _git(work, "commit", "--quiet", "-am", "edit haiku")
    _git(work, "push", "--quiet", "origin", "main")

    meta, whole = _diff(tmp_path, bare.as_uri(), uri, scope="taxonomy")
    assert meta["train"] is True and whole["changed_leaves"] == [HAIKU]
    assert {e["leaf_id"]: e["status"] for e in whole["leaves"]}[HAIKU] == "modified"
    assert sorted(e["status"] for e in whole["leaves"]) == ["modified", "unchanged", "unchanged"]
    assert whole["plan"]["changed"] == ["taxonomy"]
    meta, changed = _diff(tmp_path, bare.as_uri(), uri, scope="changed")
    assert [e["leaf_id"] for e in changed["leaves"]] == [HAIKU] and meta["leaves"] == 1


def test_production_commit_missing_from_a_shallow_clone_is_an_error(setup, tmp_path):
    work, bare, uri = setup
    first = _git(work, "rev-parse", "HEAD")
    (work / "README.md").write_text("second commit\n")
    _git(work, "add", "README.md")
    _git(work, "commit", "--quiet", "-m", "second")
    shallow = tmp_path / "shallow"
    _git(tmp_path, "clone", "--quiet", "--depth", "1", work.as_uri(), str(shallow))
    _git(shallow, "remote", "set-url", "origin", str(tmp_path / "gone.git"))  # origin cannot serve it either
    shutil.copytree(work.parent / "sample-documents", tmp_path / "sample-documents")
    _publish(uri, {production.TAXONOMY_COMMIT_TAG: first})
    with pytest.raises(UserError) as err:
        _diff(tmp_path, str(shallow), uri)
    [problem] = err.value.problems
    assert problem.rule == "production-commit" and "shallow clone" in problem.message
    assert first in problem.message and "full history" in problem.fix


def test_production_needs_a_tracking_uri(setup, tmp_path):
    work, bare, _ = setup
    with pytest.raises(UserError) as err:
        _diff(tmp_path, bare.as_uri(), "")
    assert err.value.problems[0].field == "mlflow_tracking_uri"
