"""taxonomy diff on real git repositories built from the real scenario trees in ../shared/data."""

from __future__ import annotations

import pytest

from labpipe.errors import UserError
from labpipe.taxonomy.diff import taxonomy_diff
from tests.unit.taxonomy.gitscenario import FREEFORM, commit, git, init_repo, scenario_repo, write_leaf


def by_status(diff):
    out: dict[str, set[str]] = {}
    for change in diff.changes:
        out.setdefault(change.status, set()).add(change.leaf_id)
    return out


def test_added_leaves_and_foundational_never_diffed(shared_data, tmp_path):
    repo = scenario_repo(shared_data, "S1_main_v3_additions", tmp_path / "t")
    diff = taxonomy_diff(repo, "main")
    assert by_status(diff) == {
        "added": {
            "knowledge/science/animals/birds/black_capped_chickadee",
            "knowledge/arts/music/fandom/swifties",
            "compositional_skills/grounded/linguistics/writing/rewriting",
            "compositional_skills/grounded/linguistics/inclusion",
            "compositional_skills/linguistics/synonyms",
        }
    }
    assert diff.merge_base == git(repo, "rev-parse", "main") == diff.base_used
    assert diff.head_commit == git(repo, "rev-parse", "HEAD")


def test_modified_leaves_and_paths_with_spaces(shared_data, tmp_path):
    repo = scenario_repo(shared_data, "S3_pr1430_spaces_and_foundational", tmp_path / "t")
    got = by_status(taxonomy_diff(repo, "main"))
    assert (
        "knowledge/finance/Financial Contracts & Derivatives Legal Documentation/ISDA Master 1"
        in got["added"]
    )
    assert len(got["added"]) == 3 and len(got["modified"]) == 5


def test_deleted_leaves_and_a_top_level_leaf(shared_data, tmp_path):
    repo = scenario_repo(shared_data, "S4_pr1426_deletions_and_toplevel_leaf", tmp_path / "t")
    diff = taxonomy_diff(repo, "main")
    got = by_status(diff)
    assert got["added"] == {"knowledge"} and len(got["deleted"]) == 5
    assert [c.leaf_id for c in diff.changed] == ["knowledge"]


def test_renamed_leaves(shared_data, tmp_path):
    repo = scenario_repo(shared_data, "S5_sync_2024_03_19_legacy_formats", tmp_path / "t")
    renamed = {c.path: c.old_path for c in taxonomy_diff(repo, "main").changes if c.status == "renamed"}
    assert renamed["compositional_skills/writing/freeform/jokes/puns/general/qna.yaml"] == (
        "compositional_skills/writing/freeform/jokes/puns/qna.yaml"
    )


def test_deletion_only_change(shared_data, tmp_path):
    repo = scenario_repo(shared_data, "X1_deletion_only_reorg", tmp_path / "t")
    diff = taxonomy_diff(repo, "main")
    assert diff.changed == [] and diff.counts()["deleted"] == 136


def test_untracked_and_uncommitted_changes_count_ignored_files_do_not(tmp_path):
    repo = tmp_path / "t"
    init_repo(repo)
    write_leaf(repo, "compositional_skills/a", FREEFORM)
    write_leaf(repo, "foundational_skills/f", FREEFORM)
    (repo / ".gitignore").write_text("ignored/\n")
    commit(repo, "base")
    git(repo, "branch", "base")
    write_leaf(repo, "compositional_skills/new", FREEFORM)
    write_leaf(repo, "compositional_skills/ignored/x", FREEFORM)
    write_leaf(repo, "compositional_skills/typo", FREEFORM, name="qna.yml")
    (repo / "compositional_skills/a/qna.yaml").write_text(FREEFORM.replace("tester", "someone"))
    diff = taxonomy_diff(repo, "base")
    assert by_status(diff) == {
        "untracked": {"compositional_skills/new"},
        "modified": {"compositional_skills/a"},
    }
    assert [w.rule for w in diff.warnings] == ["file-name"] and "qna.yml" in diff.warnings[0].where


def test_merge_base_with_new_commits_on_main(tmp_path):
    repo = tmp_path / "t"
    init_repo(repo)
    write_leaf(repo, "compositional_skills/a", FREEFORM)
    commit(repo, "base")
    git(repo, "checkout", "-q", "-b", "feature")
    write_leaf(repo, "compositional_skills/mine", FREEFORM)
    commit(repo, "my leaf")
    git(repo, "checkout", "-q", "main")
    write_leaf(repo, "compositional_skills/theirs", FREEFORM)
    commit(repo, "someone else's leaf on main")
    git(repo, "checkout", "-q", "feature")
    diff = taxonomy_diff(repo, "main")
    assert by_status(diff) == {"added": {"compositional_skills/mine"}}  # not "theirs", not "deleted theirs"
    assert diff.merge_base != diff.base_used


def test_base_empty_takes_every_leaf_even_outside_git(shared_data, tmp_path):
    head = shared_data / "taxonomy" / "head"
    diff = taxonomy_diff(head, "empty")
    assert len(diff.changes) == 5 and diff.head_commit == "" and diff.base_used == "empty"
    repo = scenario_repo(shared_data, "S1_main_v3_additions", tmp_path / "t")
    assert {c.leaf_id for c in taxonomy_diff(repo, "empty").changes} == {c.leaf_id for c in diff.changes}


def test_taxonomy_in_a_subdirectory_of_a_repository(tmp_path):
    init_repo(tmp_path / "r")
    write_leaf(tmp_path / "r" / "taxonomy", "compositional_skills/a", FREEFORM)
    commit(tmp_path / "r", "base")
    git(tmp_path / "r", "branch", "base")
    write_leaf(tmp_path / "r" / "taxonomy", "knowledge/b", FREEFORM)
    diff = taxonomy_diff(tmp_path / "r" / "taxonomy", "base")
    assert [(c.path, c.status) for c in diff.changes] == [("knowledge/b/qna.yaml", "untracked")]


def test_base_ref_that_does_not_exist(tmp_path):
    init_repo(tmp_path)
    write_leaf(tmp_path, "compositional_skills/a", FREEFORM)
    commit(tmp_path, "base")
    with pytest.raises(UserError) as err:
        taxonomy_diff(tmp_path, "origin/main")
    (p,) = err.value.problems
    assert p.rule == "base-ref" and "'origin/main' does not exist" in p.message
    assert "--base empty" in p.fix and "git fetch origin" in p.fix


def test_not_a_git_repository_needs_base_empty(tmp_path):
    write_leaf(tmp_path, "compositional_skills/a", FREEFORM)
    with pytest.raises(UserError) as err:
        taxonomy_diff(tmp_path, "origin/main")
    assert (
        err.value.problems[0].rule == "not-a-git-repository" and "--base empty" in err.value.problems[0].fix
    )
